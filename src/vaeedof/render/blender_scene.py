"""Build one scene.json in Blender: camera with depth of field, HDRI world, textured planes.

Only this module and `renderer` import bpy, so the rest of the package works without Blender.
"""

from __future__ import annotations

import math
from pathlib import Path

import bpy
import numpy as np

from ..logs import get_logger

# Index-map codes: plane k renders as grey (k + 1) * 16 in the ID pass; 0 = nothing.
ID_STEP = 16


def reset() -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)


def configure_render(resolution: int, samples: int, denoise: bool, device: str, threads: int,
                     seed: int, crop: list[float] | None = None) -> str:
    """Cycles settings shared by every render of a scene; returns the device actually used."""
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.render.resolution_x = scene.render.resolution_y = resolution
    scene.render.resolution_percentage = 100
    scene.render.use_border = scene.render.use_crop_to_border = crop is not None
    if crop is not None:
        x0, y0, x1, y1 = crop  # y from the top; Blender's border counts from the bottom
        scene.render.border_min_x, scene.render.border_max_x = x0, x1
        scene.render.border_min_y, scene.render.border_max_y = 1.0 - y1, 1.0 - y0
    scene.render.use_persistent_data = True  # removes most of the ~1 s fixed cost per render
    scene.render.threads_mode = "FIXED"
    scene.render.threads = max(1, threads)
    scene.render.dither_intensity = 0.0
    scene.render.film_transparent = False
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    scene.render.image_settings.color_depth = "8"
    cycles = scene.cycles
    cycles.samples = samples
    cycles.use_adaptive_sampling = False
    cycles.seed = seed
    cycles.use_denoising = denoise
    if denoise:
        cycles.denoiser = "OPENIMAGEDENOISE"
    # Direct light only: shadows and inter-reflections are off (Algorithm 1), so bounces only
    # cost time; transparent bounces let rays pass the alpha-cut-out planes.
    cycles.max_bounces = 0
    cycles.transparent_max_bounces = 64
    cycles.caustics_reflective = cycles.caustics_refractive = False
    # Faithful texture colours: 'Standard' view transform, not AgX/Filmic.
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0
    scene.display_settings.display_device = "sRGB"
    scene.sequencer_colorspace_settings.name = "sRGB"
    return _select_device(device)


def _select_device(device: str) -> str:
    scene = bpy.context.scene
    if device == "CPU":
        scene.cycles.device = "CPU"
        return "CPU"
    prefs = bpy.context.preferences.addons["cycles"].preferences
    try:
        prefs.compute_device_type = device
        prefs.get_devices()
        usable = [d for d in prefs.devices if d.type == device]
    except (TypeError, ValueError):
        usable = []
    if not usable:
        get_logger().warning("render device %s not available; falling back to CPU", device)
        scene.cycles.device = "CPU"
        return "CPU"
    for d in prefs.devices:
        d.use = d.type == device
    scene.cycles.device = "GPU"
    return device


def add_camera(camera: dict) -> bpy.types.Object:
    data = bpy.data.cameras.new("camera")
    data.lens = camera["focal_length_mm"]
    data.sensor_width = camera["sensor_width_mm"]
    data.sensor_fit = "HORIZONTAL"
    data.clip_start = 0.05
    data.clip_end = 1000.0
    data.dof.use_dof = True
    data.dof.aperture_fstop = camera["fstop"]
    obj = bpy.data.objects.new("camera", data)
    obj.rotation_euler = (math.pi / 2, 0.0, 0.0)  # look along +Y, image up = +Z
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.scene.camera = obj
    return obj


def _hdri_irradiance(image: bpy.types.Image, rotation_deg: float) -> float:
    """Luminance of the irradiance / pi that the world gives a plane facing the camera (-Y).

    With this as the divisor of the world strength, a Lambertian plane renders at its albedo
    times `strength` on average, whatever the HDRI's overall level.
    """
    width, height = image.size
    pixels = np.empty(width * height * 4, dtype=np.float32)
    image.pixels.foreach_get(pixels)
    rgb = pixels.reshape(height, width, 4)[::-1, :, :3]  # Blender stores bottom row first
    luminance = rgb @ np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
    theta = (np.arange(height) + 0.5) / height * np.pi  # polar angle from +Z
    u = (np.arange(width) + 0.5) / width
    # Cycles' equirectangular lookup: u = (pi - atan2(y, x)) / 2pi; the mapping node rotates
    # the lookup direction about Z, so the world direction is rotated back.
    azimuth = np.pi - 2 * np.pi * u - math.radians(rotation_deg)
    dir_y = np.sin(theta)[:, None] * np.sin(azimuth)[None, :]
    cosine = np.maximum(-dir_y, 0.0)
    solid_angle = (2 * np.pi / width) * (np.pi / height) * np.sin(theta)[:, None]
    return float((luminance * cosine * solid_angle).sum() / np.pi)


def add_world(world: dict, hdri_path: Path) -> None:
    scene = bpy.context.scene
    scene.world = bpy.data.worlds.new("world")
    scene.world.use_nodes = True
    nodes, links = scene.world.node_tree.nodes, scene.world.node_tree.links
    nodes.clear()
    coords = nodes.new("ShaderNodeTexCoord")
    mapping = nodes.new("ShaderNodeMapping")
    mapping.inputs["Rotation"].default_value = (0.0, 0.0, math.radians(world["rotation_deg"]))
    env = nodes.new("ShaderNodeTexEnvironment")
    env.image = bpy.data.images.load(str(hdri_path))
    background = nodes.new("ShaderNodeBackground")
    output = nodes.new("ShaderNodeOutputWorld")
    links.new(coords.outputs["Generated"], mapping.inputs["Vector"])
    links.new(mapping.outputs["Vector"], env.inputs["Vector"])
    links.new(env.outputs["Color"], background.inputs["Color"])
    links.new(background.outputs["Background"], output.inputs["Surface"])
    irradiance = _hdri_irradiance(env.image, world["rotation_deg"])
    background.inputs["Strength"].default_value = world["strength"] / max(irradiance, 1e-6)


def _plane_mesh(name: str, width: float, height: float, uv_scale: float) -> bpy.types.Mesh:
    """A width x height rectangle in local XY; UVs span [0.5 -/+ uv_scale/2] so that uv_scale > 1
    maps the image onto the central 1/uv_scale of the plane."""
    w, h = width / 2, height / 2
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata([(-w, -h, 0), (w, -h, 0), (w, h, 0), (-w, h, 0)], [], [(0, 1, 2, 3)])
    uv = mesh.uv_layers.new(name="UVMap")
    lo, hi = 0.5 - uv_scale / 2, 0.5 + uv_scale / 2
    for loop, coord in zip(mesh.polygons[0].loop_indices, [(lo, lo), (hi, lo), (hi, hi), (lo, hi)],
                           strict=True):
        uv.data[loop].uv = coord
    mesh.update()
    return mesh


def _material(name: str, image: bpy.types.Image, cutout: bool, extension: str) -> bpy.types.Material:
    material = bpy.data.materials.new(name)
    material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    nodes.clear()
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = image
    tex.extension = extension
    tex.interpolation = "Linear"
    bsdf = nodes.new("ShaderNodeBsdfPrincipled")
    bsdf.inputs["Roughness"].default_value = 1.0
    bsdf.inputs["Specular IOR Level"].default_value = 0.0
    output = nodes.new("ShaderNodeOutputMaterial")
    links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    if cutout:
        links.new(tex.outputs["Alpha"], bsdf.inputs["Alpha"])
    links.new(bsdf.outputs["BSDF"], output.inputs["Surface"])
    return material


def add_plane(index: int, plane: dict, image_path: Path) -> bpy.types.Object:
    image = bpy.data.images.load(str(image_path))
    image.alpha_mode = "STRAIGHT"
    cutout = plane["kind"] == "subject"
    uv_scale = plane["width_m"] / plane["view_size_m"] if not cutout else 1.0
    mesh = _plane_mesh(f"plane_{index}", plane["width_m"], plane["height_m"], uv_scale)
    # Subjects end at their matte (CLIP); the background mirrors past the view, where only
    # defocus blur reaches, so strong DOF never shows the world at the frame edges.
    mesh.materials.append(_material(f"plane_{index}", image, cutout,
                                    "CLIP" if cutout else "MIRROR"))
    obj = bpy.data.objects.new(f"plane_{index}", mesh)
    x, z = plane["center_m"]
    obj.location = (x, plane["distance_m"], z)
    # Rotate the XY plane to face the camera (normal -Y), then spin it about the view axis.
    obj.rotation_euler = (math.pi / 2, math.radians(plane["rotation_deg"]), 0.0)
    obj.pass_index = index + 1
    # Shadows off (Algorithm 1) and no light bouncing between planes.
    obj.visible_shadow = False
    obj.visible_diffuse = False
    obj.visible_glossy = False
    obj.visible_transmission = False
    obj.visible_volume_scatter = False
    bpy.context.scene.collection.objects.link(obj)
    return obj


def use_id_materials(planes: list[bpy.types.Object]) -> None:
    """Swap every plane to flat emission of its index code (alpha-thresholded at 0.5), world
    black: one ID render then gives the per-pixel plane index of the all-in-focus view."""
    for index, obj in enumerate(planes):
        old = obj.data.materials[0]
        tex = next(n for n in old.node_tree.nodes if n.type == "TEX_IMAGE")
        material = bpy.data.materials.new(f"id_{index}")
        material.use_nodes = True
        nodes, links = material.node_tree.nodes, material.node_tree.links
        nodes.clear()
        id_tex = nodes.new("ShaderNodeTexImage")
        id_tex.image, id_tex.extension, id_tex.interpolation = tex.image, tex.extension, "Closest"
        threshold = nodes.new("ShaderNodeMath")
        threshold.operation = "GREATER_THAN"
        threshold.inputs[1].default_value = 0.5
        emission = nodes.new("ShaderNodeEmission")
        code = (index + 1) * ID_STEP / 255.0
        linear = _srgb_to_linear(code)
        emission.inputs["Color"].default_value = (linear, linear, linear, 1.0)
        emission.inputs["Strength"].default_value = 1.0
        transparent = nodes.new("ShaderNodeBsdfTransparent")
        mix = nodes.new("ShaderNodeMixShader")
        output = nodes.new("ShaderNodeOutputMaterial")
        if index < len(planes) - 1:
            links.new(id_tex.outputs["Alpha"], threshold.inputs[0])
            links.new(threshold.outputs["Value"], mix.inputs["Fac"])
        else:
            mix.inputs["Fac"].default_value = 1.0
        links.new(transparent.outputs["BSDF"], mix.inputs[1])
        links.new(emission.outputs["Emission"], mix.inputs[2])
        links.new(mix.outputs["Shader"], output.inputs["Surface"])
        obj.data.materials[0] = material
    world = bpy.context.scene.world
    for node in world.node_tree.nodes:
        if node.type == "BACKGROUND":
            node.inputs["Strength"].default_value = 0.0


def _srgb_to_linear(value: float) -> float:
    if value <= 0.04045:
        return value / 12.92
    return ((value + 0.055) / 1.055) ** 2.4


def render_to(path: Path) -> None:
    bpy.context.scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
