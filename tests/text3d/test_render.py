"""The volume renderer against closed forms: opacity of a constant-density ball is 1 - exp(-s * chord)."""

import pytest
import torch

from polydiff.domains.text3d.cameras import camera_rays, look_at, orbit_cameras, random_cameras, view_name
from polydiff.domains.text3d.fields import MLPField, SphereField, VoxelField
from polydiff.domains.text3d.render import ray_box, render


def _analytic_opacity(cams, size, radius, density):
    origins, dirs = camera_rays(cams, size, size)
    tca = -(origins * dirs).sum(-1)
    b2 = (origins * origins).sum(-1) - tca**2
    chord = 2 * (radius**2 - b2).clamp_min(0).sqrt()
    return 1 - torch.exp(-density * chord)


def test_look_at_is_a_rotation_pointing_at_the_origin():
    cams = random_cameras(16, torch.Generator().manual_seed(0))
    rot = cams.rotation
    assert torch.allclose(rot.transpose(1, 2) @ rot, torch.eye(3).expand(16, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(16), atol=1e-5)
    _, dirs = camera_rays(cams, 2, 2)
    centre = dirs.mean(dim=(1, 2))
    expected = -cams.position / cams.position.norm(dim=-1, keepdim=True)
    assert torch.allclose(torch.nn.functional.normalize(centre, dim=-1), expected, atol=1e-5)
    top = look_at(torch.tensor([[0.0, 0.0, 3.0]]))
    assert torch.isfinite(top).all()


def test_view_names_follow_dreamfusion():
    assert view_name(10, 0) == "front" and view_name(10, 90) == "side" and view_name(10, -100) == "side"
    assert view_name(10, 180) == "back" and view_name(70, 0) == "overhead"


def test_ray_box_entry_exit():
    o = torch.tensor([[3.0, 0.0, 0.0], [3.0, 5.0, 0.0]])
    d = torch.tensor([[-1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    near, far = ray_box(o, d, 1.0)
    assert torch.allclose(near, torch.tensor([2.0, 0.0])) and torch.allclose(far, torch.tensor([4.0, 0.0]))


@pytest.mark.parametrize("elev,azim", [(0.0, 0.0), (35.0, 120.0)])
def test_sphere_opacity_matches_chord_length(elev, azim):
    radius, density = 0.6, 3.0
    cams = orbit_cameras(torch.tensor([elev]), torch.tensor([azim]), 3.0)
    out = render(SphereField(radius, density), cams, 24, n_samples=1024, stratified=False, shading="albedo")
    expected = _analytic_opacity(cams, 24, radius, density)[:, None]
    err = (out["opacity"] - expected).abs()
    assert err.max() < 0.015 and err.mean() < 2e-3
    assert expected.max() > 0.9 and (expected == 0).any()  # the image covers the ball and empty background


def test_stratified_samples_are_unbiased_in_optical_depth():
    radius, density = 0.6, 1.0
    cams = orbit_cameras(torch.tensor([10.0]), torch.tensor([30.0]), 3.0)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        taus = [-torch.log1p(-render(SphereField(radius, density), cams, 12, n_samples=24, shading="albedo",
                                     generator=gen)["opacity"].clamp(max=1 - 1e-6)) for _ in range(64)]
    expected = -torch.log1p(-_analytic_opacity(cams, 12, radius, density)[:, None].clamp(max=1 - 1e-6))
    err = (torch.stack(taus).mean(0) - expected).abs()
    assert err.max() < 0.035 and err.mean() < 0.004


def test_colour_is_composited_over_the_background():
    cams = orbit_cameras(torch.tensor([20.0]), torch.tensor([45.0]), 3.0)
    out = render(SphereField(0.5, 4.0, rgb=(0.2, 0.4, 0.6)), cams, 16, n_samples=128, stratified=False,
                 shading="albedo", background=(1.0, 0.0, 1.0))
    a = out["opacity"]
    expected = a * torch.tensor([0.2, 0.4, 0.6])[:, None, None] + (1 - a) * torch.tensor([1.0, 0.0, 1.0])[:, None, None]
    assert torch.allclose(out["rgb"], expected, atol=1e-5)


def test_density_gradient_matches_closed_form():
    """d opacity / d log(s) = s * chord * exp(-s * chord), summed over pixels."""
    radius, density = 0.6, 2.0
    cams = orbit_cameras(torch.tensor([0.0]), torch.tensor([0.0]), 3.0)
    field = SphereField(radius, density)
    out = render(field, cams, 16, n_samples=2048, stratified=False, shading="albedo")
    out["opacity"].sum().backward()
    origins, dirs = camera_rays(cams, 16, 16)
    tca = -(origins * dirs).sum(-1)
    chord = 2 * (radius**2 - ((origins * origins).sum(-1) - tca**2)).clamp_min(0).sqrt()
    expected = (density * chord * torch.exp(-density * chord)).sum()
    assert field.log_density.grad is not None
    assert abs(float(field.log_density.grad) - float(expected)) < 0.02 * float(expected)


@pytest.mark.parametrize("make", [lambda: VoxelField(16), lambda: MLPField(hidden=32, layers=2)])
def test_gradients_reach_every_parameter(make):
    field = make()
    cams = random_cameras(2, torch.Generator().manual_seed(1))
    out = render(field, cams, 12, n_samples=24, generator=torch.Generator().manual_seed(2))
    (out["rgb"].mean() + out["opacity"].mean()).backward()
    grads = [p.grad for p in field.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    if isinstance(field, VoxelField):
        assert float(field.density.grad.abs().sum()) > 0 and float(field.color.grad.abs().sum()) > 0


def _smooth_ball(resolution=32, radius=0.5, slope=8.0):
    axis = torch.linspace(-1, 1, resolution)
    x, y, z = torch.meshgrid(axis, axis, axis, indexing="ij")
    r = (x**2 + y**2 + z**2).sqrt()
    return 30 * torch.sigmoid((radius - r) * slope)


def test_normals_of_a_ball_face_the_camera_and_grid_normals_match_finite_differences():
    field = VoxelField.from_grids(_smooth_ball(), torch.tensor([0.5, 0.5, 0.5]))
    cams = orbit_cameras(torch.tensor([0.0]), torch.tensor([0.0]), 3.0)
    out = render(field, cams, 9, n_samples=128, stratified=False, shading="normal")
    centre = out["normal"][0, :, 4, 4]
    assert torch.allclose(centre / centre.norm(), torch.tensor([1.0, 0.0, 0.0]), atol=2e-2)
    pts = torch.rand(256, 3) * 0.8 - 0.4
    pts = pts[(pts.norm(dim=-1) - 0.5).abs() < 0.15]
    _, _, grid_normals = field.query(pts, normals=True)
    from polydiff.domains.text3d.render import density_normals
    fd = density_normals(field, pts, 0.05)
    assert (grid_normals * fd).sum(-1).min() > 0.97
    radial = pts / pts.norm(dim=-1, keepdim=True)
    assert (grid_normals * radial).sum(-1).min() > 0.97


def test_occupancy_skipping_does_not_change_the_image():
    field = VoxelField.from_grids(_smooth_ball(slope=20.0), torch.tensor([0.9, 0.1, 0.1]))
    assert 0.05 < float(field.occupancy.float().mean()) < 0.9
    cams = random_cameras(2, torch.Generator().manual_seed(3))
    fast = render(field, cams, 12, n_samples=48, stratified=False)
    field.occupancy.fill_(True)
    full = render(field, cams, 12, n_samples=48, stratified=False)
    assert torch.allclose(fast["rgb"], full["rgb"], atol=3e-4)


def test_bad_arguments_raise_clear_errors():
    cams = random_cameras(1)
    with pytest.raises(ValueError, match="shading"):
        render(SphereField(), cams, 8, shading="phong")
    with pytest.raises(ValueError, match="n_samples"):
        render(SphereField(), cams, 8, n_samples=0)
    with pytest.raises(ValueError, match="cubic"):
        VoxelField.from_grids(torch.zeros(4, 4, 5), torch.zeros(3))


class _RadialNormalBall(SphereField):
    """A dense ball whose normals are radial, outward (a solid's) or inward (``sign=-1``: a surface turned inside out)."""

    analytic_normals = True

    def __init__(self, sign: float) -> None:
        super().__init__(0.6, 200.0)
        self.sign = sign

    def query(self, points, normals=False):
        density, rgb = self(points)
        return density, rgb, self.sign * torch.nn.functional.normalize(points, dim=-1)


def test_orientation_penalty_is_zero_for_outward_normals_and_large_for_inward_ones():
    """Ref-NeRF's orientation term: where a dense ball is seen its outward normals face the camera (penalty ~0);
    flipped normals give each pixel about the squared cosine of the ray and the normal."""
    cams = orbit_cameras(torch.tensor([20.0, -5.0]), torch.tensor([30.0, 200.0]), 3.3)
    outs = [render(_RadialNormalBall(s), cams, 24, n_samples=128, stratified=False) for s in (1.0, -1.0)]
    hit = outs[0]["opacity"].detach()
    pen = [o["orientation"].detach() for o in outs]
    assert float(pen[0].sum()) < 1e-3 * float(hit.sum())
    assert 0.4 * float(hit.sum()) < float(pen[1].sum()) < float(hit.sum())
    assert "orientation" not in render(_RadialNormalBall(1.0), cams, 8, n_samples=8, shading="albedo")


def test_upsampled_voxel_field_keeps_a_linear_field_exactly():
    gen = torch.Generator().manual_seed(0)
    coarse = VoxelField(8, blob_density=0.0)
    with torch.no_grad():
        axis = torch.linspace(-1, 1, 8)
        z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
        coarse.density.copy_((2 * x - y + 0.5 * z)[None, None])
        coarse.color.copy_(torch.stack([x, y, z])[None])
    fine = coarse.upsampled(15)
    pts = torch.rand(500, 3, generator=gen) * 1.8 - 0.9
    for a, b in zip(coarse(pts), fine(pts)):
        assert torch.allclose(a, b, atol=1e-5)
    assert fine.resolution == 15 and fine.density.requires_grad
