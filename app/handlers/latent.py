"""The Latent space tab's handlers: the dataset's 2-D map, picks, interpolation, directions, the live point."""

from __future__ import annotations

from app.handlers.animate import render_animation
from app.handlers.checks import one_of, server
from app.handlers.live import LOCAL, live_image
from app.handlers.shared import TabHandlers
from ldm.errors import LdmError, quoted
from ldm.explore import PROJECTIONS, SPACES, available_projections
from ldm.media import save_png, write_animation
from ldm.sampling.limits import BOUNDS
from ldm.sampling.prompt_syntax import escape
from ldm.sampling.requests import ImageSpec, Progress, Settings


class LatentHandlers(TabHandlers):
    """What the Latent space tab's controls do. A drawn map comes back from the page as {space, method,
    indices} (what draw_map returned), picks as indices of the dataset's images."""

    def drawn_map(self, drawn) -> tuple[str, str, list[int]]:
        """What a map shows, as the page (or an API caller) sends it back, checked: (space, method, indices)."""
        self.shared.need_view()
        if not drawn or not isinstance(drawn, dict) or not drawn.get("indices"):
            raise LdmError("draw the map first")
        space, method, indices = drawn.get("space"), drawn.get("method"), drawn.get("indices")
        one_of("map space", space, SPACES)
        one_of("projection", method, PROJECTIONS)
        bound = BOUNDS["map_points"]
        if not isinstance(indices, list) or not bound.low <= len(indices) <= bound.server_high:
            raise LdmError(f"a map holds {bound.low} to {bound.server_high} points")
        self.picks(indices, "map points")
        if len(set(indices)) != len(indices):
            raise LdmError("a map's points must differ")
        return space, method, indices

    def picks(self, picks, what: str = "picks") -> list[int]:
        """Picked points as the page sends them back: indices of the dataset's images."""
        view = self.shared.need_view()
        if not isinstance(picks, list) or not all(
                isinstance(i, int) and not isinstance(i, bool) and 0 <= i < len(view) for i in picks):
            raise LdmError(f"{what} must be indices of the dataset's {len(view)} images")
        return picks

    def draw_map(self, space: str, method: str, points: int, picks: list, progress: Progress | None = None):
        """The 2-D map as SVG (picks marked), and what was drawn: {space, method, indices}."""
        view = self.shared.need_view()
        one_of("map space", space, SPACES)
        one_of("projection", method, available_projections())  # UMAP where umap-learn imports
        points, picks = server("map_points", points), self.picks(picks or [])
        self.shared.wait_for_view(progress)
        indices = view.subset(points)
        svg, _ = view.map_svg(space, method, indices, picks)
        return svg, {"space": space, "method": method, "indices": indices}

    def pick(self, drawn: dict | None, picks: list, k) -> tuple[str, list, str, str]:
        """Point k of the drawn map: its image (decoded or generated), the picks with it last, their captions,
        and the map redrawn with the picks marked."""
        shared = self.shared
        view = shared.need_view()
        space, method, indices = self.drawn_map(drawn)
        if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k < len(indices):
            raise LdmError("click on a point of the map")
        i = indices[k]
        picks = ([*self.picks(picks or []), i])[-2:]
        if space == "latents":
            image = shared.batcher.run(view.decoded, i)
        else:
            image = shared.batcher.generate([ImageSpec(escape(view.captions[i]), 0)], Settings())[0]
        path = str(save_png(image, shared.folders.new("pick") / "pick.png"))
        labels = " → ".join(f"“{view.captions[p]}”" for p in picks)
        svg, _ = view.map_svg(space, method, indices, picks)
        return path, picks, f"picked: {labels}", svg

    def interpolate_picks(self, drawn: dict | None, picks: list, frames: int, progress: Progress | None = None) -> str:
        """A GIF between the two picked points: a prompt morph (caption map) or a latent slerp (latent map)."""
        shared = self.shared
        view = shared.need_view()
        if not picks or len(picks) < 2 or not drawn:
            raise LdmError("pick two points on the map first")
        space, _, _ = self.drawn_map(drawn)
        frames = server("frames", frames)
        a, b = self.picks(picks)[-2:]
        if space == "captions":
            return render_animation(shared, "pick-morph", [view.captions[a], view.captions[b]], [0], frames,
                                    shared.model.resolve(Settings()), progress)[0]
        images = shared.batcher.run(view.slerp_images, a, b, frames)
        paths = write_animation(shared.folders.new("pick-slerp"), images, [""] * frames)
        return next(str(p) for p in paths if p.suffix == ".gif")

    def traverse(self, picks: list, *amounts: float) -> str:
        """The last picked image moved along the latent space's top principal directions."""
        shared = self.shared
        view = shared.need_view()
        if not picks:
            raise LdmError("pick a point on the map first")
        picks, amounts = self.picks(picks), [server("direction", a) for a in amounts]
        image = shared.batcher.run(view.traversed, picks[-1], amounts)
        return str(save_png(image, shared.folders.new("traverse") / "traverse.png"))

    def map_point(self, drawn: dict | None, x: float, y: float, client: str = LOCAL) -> str:
        """The image at a position of the drawn map (SVG units): the latent map decodes the latent there
        (inverse PCA; t-SNE/UMAP blend the nearest points), the caption map generates from the nearest
        captions' embeddings blended."""
        shared = self.shared
        view = shared.need_view()
        space, method, indices = self.drawn_map(drawn)
        for value in (x, y):
            if isinstance(value, bool) or not isinstance(value, int | float) or not -1e4 < value < 1e4:
                raise LdmError(f"map position must be a number, got {quoted(value)}")
        if method != "pca" and not view.has_projection(space, method, indices):
            # t-SNE and UMAP take seconds to fit: a live call only reads a map that Draw map made
            raise LdmError("this map is no longer the one drawn on the server: press Draw map again")
        if space == "latents":
            return shared.batcher.run_live(client, lambda: str(
                save_png(view.image_at(method, indices, x, y), shared.folders.new("live") / "map.png")))

        def blend() -> ImageSpec:
            first, mix = view.captions_at(method, indices, x, y)
            return ImageSpec(first, 0, mix=mix)

        return live_image(shared, blend, client=client)
