"""Rendering MattingMFIF scenes with Blender (bpy, Cycles)."""
