// Embeddings: a few texts in, their cosine similarity matrix drawn as a heat map (SVG).
import { invocationsPath, postJSON } from "./api.js";

const $ = (selector) => document.querySelector(selector);
const SVG = "http://www.w3.org/2000/svg";
const CELL = 64;
const MARGIN = 44;

export function cosine(a, b) {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i += 1) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return na && nb ? dot / Math.sqrt(na * nb) : 0;
}

/** White (0 or below) to deep blue (1). */
function colour(value) {
  const t = Math.max(0, Math.min(1, value));
  const mix = (from, to) => Math.round(from + (to - from) * t);
  return `rgb(${mix(247, 23)}, ${mix(250, 72)}, ${mix(255, 158)})`;
}

function svgNode(tag, attributes, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function drawHeatmap(box, texts, matrix) {
  const size = MARGIN + CELL * texts.length;
  const svg = svgNode("svg", { viewBox: `0 0 ${size} ${size}`, width: size, height: size, role: "img" });
  svg.append(svgNode("title", {}, "Cosine similarity of the texts"));
  texts.forEach((_, i) => {
    const label = `T${i + 1}`;
    svg.append(svgNode("text", { x: MARGIN + CELL * i + CELL / 2, y: MARGIN - 12, class: "axis" }, label));
    svg.append(svgNode("text", { x: MARGIN - 10, y: MARGIN + CELL * i + CELL / 2 + 4, class: "axis end" }, label));
  });
  matrix.forEach((row, i) => {
    row.forEach((value, j) => {
      const x = MARGIN + CELL * j;
      const y = MARGIN + CELL * i;
      const cell = svgNode("rect", {
        x, y, width: CELL - 2, height: CELL - 2, rx: 4, fill: colour(value),
        "data-testid": "heatmap-cell", "data-value": value.toFixed(4),
      });
      cell.append(svgNode("title", {}, `T${i + 1} · T${j + 1}: ${value.toFixed(3)}`));
      svg.append(cell);
      svg.append(svgNode("text", {
        x: x + CELL / 2 - 1, y: y + CELL / 2 + 4, class: value > 0.55 ? "value light" : "value",
      }, value.toFixed(2)));
    });
  });
  const legend = document.createElement("ol");
  legend.className = "legend";
  for (const text of texts) {
    const item = document.createElement("li");
    item.textContent = text;
    legend.append(item);
  }
  box.replaceChildren(svg, legend);
}

export function setupEmbeddings(page) {
  $("#embeddings-run").addEventListener("click", async () => {
    const endpoint = page.selected();
    const texts = $("#embeddings-texts").value.split("\n").map((t) => t.trim()).filter(Boolean);
    if (!endpoint || texts.length < 2) {
      page.showError("Give at least two texts, one a line.");
      return;
    }
    page.clearError();
    $("#embeddings-meta").textContent = "Embedding...";
    const started = performance.now();
    try {
      const body = await postJSON(invocationsPath(endpoint.name), { input: texts });
      const vectors = [...body.data].sort((a, b) => a.index - b.index).map((d) => d.embedding);
      const matrix = vectors.map((a) => vectors.map((b) => cosine(a, b)));
      drawHeatmap($("#heatmap"), texts, matrix);
      const ms = Math.round(performance.now() - started);
      $("#embeddings-meta").textContent =
        `${texts.length} texts · ${vectors[0].length} dimensions · ${ms} ms · ${body.usage?.prompt_tokens ?? "?"} tokens`;
    } catch (error) {
      $("#embeddings-meta").textContent = "";
      page.showError(error);
    }
  });
}
