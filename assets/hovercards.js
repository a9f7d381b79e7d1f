// Round hover cards (.af-tip inside each .af-span): placed in the viewport when they open, since a
// card up to 680 px wide opened from a span's left edge ran off the right of the screen and below
// the fold. Below the span when it fits, else above; shifted left to stay on screen. Escape closes.
(() => {
  const MARGIN = 8;
  function place(span) {
    const tip = span.querySelector(":scope > .af-tip");
    if (!tip || getComputedStyle(tip).display === "none") return;
    const vw = document.documentElement.clientWidth, vh = document.documentElement.clientHeight;
    tip.style.maxWidth = Math.min(680, vw - 2 * MARGIN) + "px";
    tip.style.maxHeight = (vh - 2 * MARGIN) + "px";
    tip.style.left = tip.style.top = "0px";
    const origin = tip.getBoundingClientRect();   // (0, 0) is not the viewport's corner under a transform
    const lines = span.getClientRects();         // a span may wrap: anchor at its first and last line
    const first = lines[0], last = lines[lines.length - 1];
    const w = origin.width, h = origin.height;
    const x = Math.max(MARGIN, Math.min(first.left, vw - w - MARGIN));
    const below = vh - last.bottom >= h + MARGIN, above = first.top >= h + MARGIN;
    const y = below || !above ? Math.max(MARGIN, Math.min(last.bottom, vh - h - MARGIN)) : first.top - h;
    tip.style.left = (x - origin.left) + "px";
    tip.style.top = (y - origin.top) + "px";
  }
  const spanOf = (e) => e.target instanceof Element ? e.target.closest(".af-span") : null;
  document.addEventListener("mouseover", (e) => { const s = spanOf(e); if (s) place(s); });
  document.addEventListener("focusin", (e) => { const s = spanOf(e); if (s) { s.classList.remove("af-closed"); place(s); } });
  document.addEventListener("mouseout", (e) => {
    const s = spanOf(e);
    if (s && !s.contains(e.relatedTarget)) s.classList.remove("af-closed");
  });
  document.addEventListener("keydown", (e) => {
    if (e.key !== "Escape") return;
    document.querySelectorAll(".af-span:hover, .af-span:focus").forEach((s) => s.classList.add("af-closed"));
    const s = document.activeElement && document.activeElement.closest(".af-span");
    if (s) s.blur();
  });
  // an open card follows its span when the page or a panel scrolls
  document.addEventListener("scroll", () => {
    document.querySelectorAll(".af-span:hover, .af-span:focus").forEach(place);
  }, {capture: true, passive: true});
})();
