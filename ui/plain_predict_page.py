"""The Predict page of a predict-only process: one static HTML page over /api/predict and /api/classify-url.

The full app's Predict page is Gradio's (ui/predict_page.py). Gradio alone holds about 165 MB of a
process (pandas with it), most of what a predictor needs; this page asks the same two routes with
fetch() and shows the answer, so a predict-only process stays small. Every text from the server is set
with textContent, never as HTML.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from ui.predict_status import STATUS_REFRESH_S, TOP_CLASSES

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Loupe — Predict</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 42rem; margin: 2rem auto; padding: 0 1rem; }
  fieldset { border: 1px solid #ccc; border-radius: 6px; margin: 1rem 0; }
  table { border-collapse: collapse; } td { padding: 0.2rem 0.8rem 0.2rem 0; }
  #refusal { color: #a40000; } #status { color: #333; }
</style>
</head>
<body>
<h1>Predict</h1>
<p id="status">…</p>
<fieldset><legend>An image from your computer</legend>
  <input id="file" type="file" accept="image/*"> <button id="send-file">Predict</button>
</fieldset>
<fieldset><legend>An image on the web</legend>
  <input id="url" type="url" size="40" placeholder="https://…"> <button id="send-url">Predict</button>
</fieldset>
<p id="refusal" role="alert"></p>
<table id="answer"></table>
<script>
const TOP = __TOP__, REFRESH_MS = __REFRESH_MS__;
const $ = (id) => document.getElementById(id);
function show(answer) {
  const table = $("answer"); table.replaceChildren(); $("refusal").textContent = "";
  for (const [label, p] of answer.predictions.slice(0, TOP)) {
    const row = table.insertRow(); row.insertCell().textContent = label;
    row.insertCell().textContent = (100 * p).toFixed(1) + "%";
  }
  $("status").textContent = "Model version " + answer.model_version + " answered.";
}
async function ask(request) {
  $("answer").replaceChildren();
  try {
    const response = await request;
    const body = await response.json();
    if (response.ok) show(body); else $("refusal").textContent = body.detail || response.statusText;
  } catch (error) { $("refusal").textContent = "Loupe did not answer: " + error; }
}
$("send-file").onclick = () => {
  const file = $("file").files[0];
  if (!file) { $("refusal").textContent = "Choose an image first."; return; }
  const form = new FormData(); form.append("file", file);
  ask(fetch("api/predict", { method: "POST", body: form }));
};
$("send-url").onclick = () => ask(fetch("api/classify-url?url=" + encodeURIComponent($("url").value)));
async function refresh() {
  try {
    const health = await (await fetch("api/health")).json();
    $("status").textContent = health.answering;
    if (!health.model_version) setTimeout(refresh, REFRESH_MS);
  } catch (error) { setTimeout(refresh, REFRESH_MS); }
}
refresh();
</script>
</body>
</html>
"""


def build_plain_predict_router() -> APIRouter:
    """GET / answering the static Predict page."""
    router = APIRouter()
    page = PAGE.replace("__TOP__", str(TOP_CLASSES)).replace("__REFRESH_MS__", str(int(STATUS_REFRESH_S * 1000)))

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def predict_page() -> str:
        return page

    return router
