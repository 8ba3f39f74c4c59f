// minigpt serve: the chat page. Plain JavaScript, no libraries: it speaks the server's own
// OpenAI-style API (/v1/models, /v1/chat/completions, /v1/completions, /v1/classify) and reads
// streamed answers as server-sent events ("data: {json}" lines, ending with "data: [DONE]").
"use strict";

const $ = (id) => document.getElementById(id);
const state = { model: null, info: null, controller: null, apiKey: localStorage.getItem("minigpt-api-key") || "" };

function headers() {
  const result = { "Content-Type": "application/json" };
  if (state.apiKey) result.Authorization = "Bearer " + state.apiKey;
  return result;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    if (response.status === 401) $("api-key-label").hidden = false;
    return body.error ? body.error.message : JSON.stringify(body);
  } catch (_) {
    return "HTTP " + response.status;
  }
}

function formatCount(n) {
  if (n >= 1e9) return (n / 1e9).toFixed(1) + "B";
  if (n >= 1e6) return (n / 1e6).toFixed(1) + "M";
  if (n >= 1e3) return (n / 1e3).toFixed(1) + "k";
  return String(n);
}

async function loadModel() {
  let response;
  try {
    response = await fetch("/v1/models", { headers: headers() });
  } catch (_) {
    setServerGone(true);
    setTimeout(loadModel, 2000);
    return;
  }
  if (!response.ok) {
    showError(await errorMessage(response));
    return;
  }
  showError("");
  const card = (await response.json()).data[0];
  state.model = card.id;
  state.info = card.minigpt;
  const info = state.info;
  $("model-name").textContent = card.id + " (" + info.kind + ")";
  $("model-size").textContent = formatCount(info.parameters) + " parameters · " + info.n_layers + " layers · context " +
    info.context_length + " tokens";
  $("max-tokens").max = info.max_tokens;
  if (Number($("max-tokens").value) > info.max_tokens) $("max-tokens").value = info.max_tokens;
  const classifier = info.kind === "classifier";
  $("classify").hidden = !classifier;
  $("chat").hidden = classifier;
  $("settings").hidden = classifier && $("api-key-label").hidden;
  $("mode-note").textContent = info.kind === "instruct"
    ? "Instruction-tuned (book chapter 7): each message is one instruction in the book's prompt format."
    : "A base model (book chapter 5): it continues your text.";
  $("prompt").placeholder = info.kind === "instruct"
    ? "An instruction, e.g. Name the author of 'Pride and Prejudice'. Enter sends, Shift+Enter: new line."
    : "Text to continue, e.g. Every effort moves you. Enter sends, Shift+Enter: new line.";
}

function settings() {
  const number = (id) => Number($(id).value);
  const result = { temperature: number("temperature"), top_p: number("top-p"), max_tokens: number("max-tokens") };
  if (number("top-k") >= 1) result.top_k = Math.round(number("top-k"));
  return result;
}

function addMessage(role, text) {
  const element = document.createElement("div");
  element.className = "message " + role;
  element.textContent = text;
  $("messages").appendChild(element);
  element.scrollIntoView({ block: "end" });
  return element;
}

function setGenerating(on) {
  $("send").disabled = on;
  $("stop").disabled = !on;
}

// Read a streamed answer: call onData(object) for each "data: {json}" event until [DONE].
async function readEvents(response, onData) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return;
        onData(JSON.parse(data));
      }
    }
  }
}

async function send() {
  const text = $("prompt").value.trim();
  if (!text || state.controller || !state.model) return;
  $("prompt").value = "";
  showError("");
  addMessage("user", text);
  const answer = addMessage("assistant", state.info.kind === "base" ? text : "");
  answer.classList.add("streaming");
  const chat = state.info.kind !== "base";
  const body = Object.assign({ model: state.model, stream: true, stream_options: { include_usage: true } }, settings());
  if (chat) body.messages = [{ role: "user", content: text }];
  else body.prompt = text;
  state.controller = new AbortController();
  setGenerating(true);
  const started = performance.now();
  let pieces = 0, finish = null, tokens = null, failed = null;
  const showSpeed = () => {
    const seconds = (performance.now() - started) / 1000;
    const count = tokens === null ? pieces : tokens;
    if (seconds > 0 && count > 0) $("tps").textContent = count + " tokens · " + (count / seconds).toFixed(1) + " tokens/s";
  };
  try {
    const response = await fetch(chat ? "/v1/chat/completions" : "/v1/completions",
      { method: "POST", headers: headers(), body: JSON.stringify(body), signal: state.controller.signal });
    if (!response.ok) throw new Error(await errorMessage(response));
    await readEvents(response, (data) => {
      if (data.error) { failed = data.error.message; return; }
      if (data.usage) tokens = data.usage.completion_tokens;
      const choice = data.choices && data.choices[0];
      if (!choice) { showSpeed(); return; }
      const piece = chat ? choice.delta.content : choice.text;
      if (piece) { answer.textContent += piece; pieces += 1; answer.scrollIntoView({ block: "end" }); }
      if (choice.finish_reason) finish = choice.finish_reason;
      showSpeed();
    });
    if (failed) throw new Error(failed);
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = finish === "length" ? "(stopped at the token limit)" : "";
    if (meta.textContent) answer.appendChild(meta);
  } catch (error) {
    const meta = document.createElement("span");
    meta.className = "meta";
    if (error.name === "AbortError") {
      meta.textContent = "(stopped)";
    } else {
      answer.classList.add("failed");
      meta.textContent = "(error: " + error.message + ")";
      if (error instanceof TypeError) setServerGone(true);  // fetch failed: no server
      else showError(error.message);
    }
    answer.appendChild(meta);
  } finally {
    answer.classList.remove("streaming");
    state.controller = null;
    setGenerating(false);
  }
}

async function classify() {
  const text = $("classify-text").value.trim();
  if (!text) return;
  showError("");
  try {
    const response = await fetch("/v1/classify", { method: "POST", headers: headers(), body: JSON.stringify({ model: state.model, input: text }) });
    if (!response.ok) throw new Error(await errorMessage(response));
    const result = (await response.json()).data[0];
    const out = $("classify-result");
    out.textContent = "";
    const label = document.createElement("div");
    label.className = "label";
    label.textContent = result.label;
    out.appendChild(label);
    for (const [name, probability] of Object.entries(result.probabilities)) {
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.innerHTML = '<span class="name"></span><span class="track"><span class="fill"></span></span><span class="value"></span>';
      bar.querySelector(".name").textContent = name;
      bar.querySelector(".fill").style.width = (100 * probability).toFixed(1) + "%";
      bar.querySelector(".value").textContent = (100 * probability).toFixed(1) + " %";
      out.appendChild(bar);
    }
  } catch (error) {
    if (error instanceof TypeError) setServerGone(true);
    else showError(error.message);
  }
}

function setServerGone(gone) {
  $("server-gone").hidden = !gone;
}

async function checkHealth() {
  try {
    const response = await fetch("/health", { cache: "no-store" });
    const wasGone = !$("server-gone").hidden;
    setServerGone(!response.ok);
    if (wasGone && response.ok) loadModel();
  } catch (_) {
    setServerGone(true);
  }
}

$("chat-form").addEventListener("submit", (event) => { event.preventDefault(); send(); });
$("classify-form").addEventListener("submit", (event) => { event.preventDefault(); classify(); });
for (const [area, action] of [["prompt", send], ["classify-text", classify]]) {
  $(area).addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); action(); }
  });
}
$("stop").addEventListener("click", () => { if (state.controller) state.controller.abort(); });
$("clear").addEventListener("click", () => { $("messages").textContent = ""; $("tps").textContent = ""; });
$("api-key").addEventListener("change", () => {
  state.apiKey = $("api-key").value.trim();
  localStorage.setItem("minigpt-api-key", state.apiKey);
  loadModel();
});
loadModel();
setInterval(checkHealth, 2000);
