// The chat page: answers stream over the WebSocket token by token.
//
// Model text only ever enters the page as text (a Text node that grows with each token). When an
// answer ends, the server's rendering of it — Markdown, sanitised — replaces the plain text; the
// page never turns model text into HTML itself.

const root = document.getElementById("chat");
const states = JSON.parse(document.getElementById("states-data").textContent);
const picker = JSON.parse(document.getElementById("picker-data").textContent);

const list = document.getElementById("messages");
const form = document.getElementById("composer");
const input = document.getElementById("composer-input");
const sendButton = document.getElementById("send");
const stopButton = document.getElementById("stop");
const alertBox = document.getElementById("chat-alert");
const live = document.getElementById("chat-live");
const connState = document.getElementById("conn-state");
const settingsForm = document.getElementById("chat-settings");
const settingsStatus = document.getElementById("settings-status");
const providerSelect = document.getElementById("provider");
const modelSelect = document.getElementById("model");
const temperatureInput = document.getElementById("temperature");
const maxTokensInput = document.getElementById("max-tokens");

const PARAMS_KEY = `gatehouse.chat.${root.dataset.chatId}.params`;
const CLOSE_ACCESS_REVOKED = 4403;
const CLOSE_CHAT_DELETED = 4404;

let socket = null;
let connected = false;
let reconnectDelay = 500;
let answer = null; // the answer on screen while it streams: {article, text, messageId, mine, sent}
let blockedUntil = 0; // rate limited: no sending before this time (ms)
let blockTimer = null;

// --- building messages (text only) ----------------------------------------------------------

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function messageArticle(role, label) {
  document.getElementById("empty-chat")?.remove();
  const article = element("article", `msg msg-${role}`);
  article.setAttribute("aria-label", role === "user" ? "You said" : "Answer");
  const head = element("header", "msg-head");
  head.append(element("span", "msg-role", role === "user" ? "You" : "Assistant"));
  if (label) head.append(element("span", "msg-model", label));
  const body = element("div", "msg-body");
  article.append(head, body);
  list.append(article);
  return { article, head, body };
}

function addUserMessage(content) {
  const { article, body } = messageArticle("user");
  body.append(element("p", "plain", content));
  scrollToEnd(true);
  return article;
}

function startAnswer({ mine, messageId = null, label = "" }) {
  const { article, head, body } = messageArticle("assistant", label);
  article.classList.add("msg-status-streaming");
  article.dataset.status = "streaming";
  const text = document.createTextNode("");
  const pre = element("div", "streaming-text");
  pre.append(text);
  const cursor = element("span", "cursor");
  cursor.setAttribute("aria-hidden", "true");
  body.append(pre, cursor);
  if (messageId) article.dataset.messageId = messageId;
  return { article, head, text, messageId, mine, tokens: 0 };
}

function setLabel(current, label) {
  let model = current.head.querySelector(".msg-model");
  if (!model) {
    model = element("span", "msg-model");
    current.head.append(model);
  }
  model.textContent = label;
}

function markAnswer(current, status, note) {
  current.article.dataset.status = status;
  current.article.classList.remove("msg-status-streaming");
  current.article.classList.add(`msg-status-${status}`);
  current.article.querySelector(".cursor")?.remove();
  if (note) {
    const state = element("p", "msg-state");
    state.dataset.state = status;
    state.append(element("strong", "", states.statuses[status] || status), " ", note);
    current.article.append(state);
  }
}

// Near the bottom, follow the answer as it grows; a reader scrolled up is left in peace.
function scrollToEnd(force = false) {
  const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 120;
  if (force || nearBottom) list.scrollTop = list.scrollHeight;
  const page = document.scrollingElement;
  if (force || page.scrollHeight - page.scrollTop - window.innerHeight < 160) {
    page.scrollTop = page.scrollHeight;
  }
}

// --- the server's rendering of a finished message -----------------------------------------

async function fetchJson(url) {
  const response = await fetch(url, {
    headers: { Accept: "application/json" },
    credentials: "same-origin",
  });
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

async function swapInRendered(current) {
  if (!current.messageId) return null;
  try {
    const data = await fetchJson(`${root.dataset.htmlUrl}${current.messageId}/html`);
    // Server-rendered and sanitised (nh3): the one place HTML enters the page.
    const holder = document.createElement("template");
    holder.innerHTML = data.html;
    const rendered = holder.content.firstElementChild;
    if (!rendered) return null;
    current.article.replaceWith(rendered);
    current.article = rendered;
    showTitle(data.chat_title);
    return data.status;
  } catch (error) {
    console.warn("could not load the rendered answer", error);
    return null;
  }
}

// After a dropped connection the server may still be finishing the answer: ask again until
// it is settled (for about half a minute).
async function swapInWhenSettled(current, attempts = 15) {
  const status = await swapInRendered(current);
  if (status === "streaming" && attempts > 1) {
    setTimeout(() => swapInWhenSettled(current, attempts - 1), 2000);
  }
}

function showTitle(title) {
  const heading = document.getElementById("chat-title");
  if (!title || heading.textContent === title) return;
  heading.textContent = title;
  document.title = `${title} · Gatehouse`;
  const link = document.querySelector('.sidebar-chats a[aria-current="page"]');
  if (link) link.textContent = title;
}

async function refreshBudget() {
  try {
    const data = await fetchJson(root.dataset.budgetUrl);
    const holder = document.createElement("template");
    holder.innerHTML = data.html;
    document.getElementById("budget").replaceChildren(holder.content);
  } catch (error) {
    console.warn("could not refresh the budget", error);
  }
}

// --- failures -------------------------------------------------------------------------------

function localTime(iso) {
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return iso;
  return when.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

function dollars(amount) {
  const value = Number(amount);
  if (!Number.isFinite(value)) return String(amount);
  return value >= 1 || value === 0 ? value.toFixed(2) : String(Number(value.toPrecision(2)));
}

function describeLimit(limit) {
  const period = { day: "per day", week: "per week", month: "per month", total: "in total" };
  const name = limit.name ? `“${limit.name}”` : `the ${limit.scope} limit`;
  return `${name}: ${dollars(limit.amount)} USD ${period[limit.period] || limit.period}`;
}

// What the frame says beyond its message: the limit (when the message does not name it) and
// the reset time in the reader's own time zone; when to retry.
function details(frame) {
  const lines = [];
  if (frame.code === "budget_exceeded") {
    const limit = frame.limit && typeof frame.limit === "object" ? frame.limit : null;
    if (limit && !frame.message) lines.push(`Limit ${describeLimit(limit)}.`);
    if (frame.resets_at) lines.push(`Resets ${localTime(frame.resets_at)} (your time).`);
  }
  if (frame.code === "rate_limited" && frame.retry_after) {
    lines.push(`You can send again in ${Math.ceil(frame.retry_after)} s.`);
  }
  return lines;
}

function showAlert(frame) {
  const state = states.failures[frame.code] || states.generic;
  alertBox.replaceChildren();
  alertBox.dataset.code = frame.code || "error";
  const title = element("p", "alert-title");
  title.append(element("strong", "", state.title));
  alertBox.append(title);
  if (frame.message) alertBox.append(element("p", "", frame.message));
  for (const line of details(frame)) alertBox.append(element("p", "", line));
  if (!frame.message || states.failures[frame.code]) alertBox.append(element("p", "muted small", state.hint));
  if (frame.request_id) alertBox.append(element("p", "muted small", `Request id ${frame.request_id}`));
  const close = element("button", "button-small button-quiet alert-close", "Dismiss");
  close.type = "button";
  close.addEventListener("click", hideAlert);
  alertBox.append(close);
  alertBox.hidden = false;
}

function hideAlert() {
  alertBox.hidden = true;
  alertBox.replaceChildren();
}

function holdSending(seconds) {
  blockedUntil = Date.now() + seconds * 1000;
  clearInterval(blockTimer);
  const tick = () => {
    const left = Math.ceil((blockedUntil - Date.now()) / 1000);
    if (left <= 0) {
      clearInterval(blockTimer);
      sendButton.textContent = "Send";
      updateControls();
      return;
    }
    sendButton.textContent = `Send (${left} s)`;
    updateControls();
  };
  tick();
  blockTimer = setInterval(tick, 1000);
}

// --- frames from the server -----------------------------------------------------------------

function onStart(frame) {
  const label = `${frame.provider} / ${frame.model}`;
  if (answer && answer.mine && !answer.messageId) {
    answer.messageId = frame.message_id;
    answer.article.dataset.messageId = frame.message_id;
    setLabel(answer, label);
  } else {
    // An answer generated from elsewhere (another tab) on this chat.
    answer = startAnswer({ mine: false, messageId: frame.message_id, label });
  }
  live.textContent = "Answering…";
  updateControls();
}

function onToken(frame) {
  if (!answer) answer = startAnswer({ mine: false });
  answer.text.appendData(frame.delta);
  answer.tokens += 1;
  scrollToEnd();
}

// The answer is over: the streamed text stays until the server's rendering (Markdown, cost,
// state) replaces it. Until then it is "settling"; only if that fetch fails is it marked here.
function settle(current) {
  current.article.dataset.status = "settling";
  current.article.classList.remove("msg-status-streaming");
  current.article.querySelector(".cursor")?.remove();
}

async function onDone(frame) {
  const current = answer;
  answer = null;
  updateControls();
  if (!current) return;
  current.messageId = current.messageId || frame.message_id;
  settle(current);
  if (!(await swapInRendered(current))) markAnswer(current, frame.status || "complete");
  live.textContent = frame.status === "cancelled" ? "Answer stopped." : "Answer complete.";
  refreshBudget();
  scrollToEnd();
  input.focus();
}

async function onError(frame) {
  const current = answer;
  answer = null;
  updateControls();
  showAlert(frame);
  live.textContent = (states.failures[frame.code] || states.generic).title;
  if (frame.code === "rate_limited" && frame.retry_after) holdSending(frame.retry_after);
  if (!current) return;
  current.messageId = current.messageId || frame.message_id || null;
  if (current.messageId) {
    // The provider failed after the answer began: the server saved it (partial, marked).
    settle(current);
    if (!(await swapInRendered(current))) markAnswer(current, "error");
    refreshBudget();
  } else if (current.mine) {
    // Refused before anything was stored: take the message back so it can be sent again.
    current.article.remove();
    current.sent?.remove();
    if (!input.value) input.value = current.content || "";
  }
}

function onFrame(frame) {
  switch (frame.type) {
    case "start":
      return onStart(frame);
    case "token":
      return onToken(frame);
    case "done":
      return onDone(frame);
    case "error":
      return onError(frame);
    default:
      return undefined;
  }
}

// --- the socket -----------------------------------------------------------------------------

function setConnected(state, text) {
  connected = state;
  connState.textContent = text || (state ? "" : "Reconnecting…");
  connState.dataset.state = state ? "open" : "closed";
  updateControls();
}

function connect() {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  socket = new WebSocket(`${scheme}//${window.location.host}${root.dataset.socketPath}`);
  socket.addEventListener("open", () => {
    reconnectDelay = 500;
    setConnected(true);
    if (document.activeElement === document.body) input.focus();
  });
  socket.addEventListener("message", (event) => {
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    onFrame(frame);
  });
  socket.addEventListener("close", (event) => onClose(event));
}

function onClose(event) {
  const current = answer;
  answer = null;
  if (current) {
    // The server keeps what was written; say so, and show its copy once we are back.
    markAnswer(current, "partial", "The connection dropped; the partial answer is kept.");
    setTimeout(() => swapInWhenSettled(current), 1500);
  }
  if (event.code === CLOSE_ACCESS_REVOKED) {
    setConnected(false, "Disconnected");
    showAlert({ code: "access_revoked" });
    return;
  }
  if (event.code === CLOSE_CHAT_DELETED) {
    // Its `chat_deleted` error frame is on screen already; there is nothing to reconnect to.
    setConnected(false, "Chat deleted");
    return;
  }
  setConnected(false);
  setTimeout(connect, reconnectDelay);
  reconnectDelay = Math.min(reconnectDelay * 2, 5000);
}

// --- sending --------------------------------------------------------------------------------

function updateControls() {
  const streaming = answer !== null;
  const held = Date.now() < blockedUntil;
  input.disabled = !connected && !streaming;
  sendButton.disabled = !connected || streaming || held;
  stopButton.hidden = !streaming;
  stopButton.disabled = !connected;
}

function params() {
  const frame = {};
  if (providerSelect?.value) frame.provider = providerSelect.value;
  if (modelSelect?.value) frame.model = modelSelect.value;
  const temperature = temperatureInput.value.trim();
  if (temperature !== "") frame.temperature = Number(temperature);
  const maxTokens = maxTokensInput.value.trim();
  if (maxTokens !== "") frame.max_tokens = Number.parseInt(maxTokens, 10);
  return frame;
}

function send() {
  const content = input.value;
  if (!content.trim() || answer || !connected || Date.now() < blockedUntil) return;
  hideAlert();
  socket.send(JSON.stringify({ type: "message", content, ...params() }));
  const sent = addUserMessage(content);
  answer = startAnswer({ mine: true });
  answer.sent = sent;
  answer.content = content;
  input.value = "";
  live.textContent = "Sent.";
  updateControls();
}

function stop() {
  if (!answer || !connected) return;
  socket.send(JSON.stringify({ type: "cancel" }));
  stopButton.disabled = true;
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  send();
});

input.addEventListener("keydown", (event) => {
  if (event.key !== "Enter" || event.shiftKey || event.isComposing) return;
  if (event.ctrlKey || event.altKey || event.metaKey) return;
  event.preventDefault();
  send();
});

stopButton.addEventListener("click", stop);
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && answer) stop();
});

// --- provider, model and advanced settings --------------------------------------------------

function showModelsOf(provider) {
  for (const group of modelSelect.querySelectorAll("optgroup")) {
    const mine = group.dataset.provider === provider;
    group.hidden = !mine;
    group.disabled = !mine;
  }
}

async function saveSettings() {
  settingsStatus.textContent = "Saving…";
  try {
    const body = new FormData(settingsForm);
    const response = await fetch(settingsForm.action, {
      method: "POST",
      body,
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    });
    const data = await response.json();
    settingsStatus.textContent = data.ok ? "Saved for this chat." : data.message;
  } catch (error) {
    settingsStatus.textContent = "Could not save the choice.";
    console.warn(error);
  }
}

if (providerSelect && modelSelect) {
  showModelsOf(providerSelect.value);
  providerSelect.addEventListener("change", () => {
    const provider = providerSelect.value;
    showModelsOf(provider);
    const fallback = picker.providers[provider]?.default || "";
    const option = [...modelSelect.options].find(
      (o) => o.parentElement.dataset.provider === provider && o.value === fallback,
    );
    const first = modelSelect.querySelector(`optgroup[data-provider="${CSS.escape(provider)}"] option`);
    (option || first || {}).selected = true;
    saveSettings();
  });
  modelSelect.addEventListener("change", saveSettings);
  settingsForm.addEventListener("submit", (event) => {
    event.preventDefault();
    saveSettings();
  });
}

// Temperature and max tokens are remembered per chat in this browser.
function loadParams() {
  try {
    const saved = JSON.parse(window.localStorage.getItem(PARAMS_KEY) || "{}");
    temperatureInput.value = saved.temperature ?? "";
    maxTokensInput.value = saved.max_tokens ?? "";
  } catch {
    /* a broken entry is forgotten */
  }
}

function storeParams() {
  const saved = { temperature: temperatureInput.value, max_tokens: maxTokensInput.value };
  window.localStorage.setItem(PARAMS_KEY, JSON.stringify(saved));
}

loadParams();
temperatureInput.addEventListener("change", storeParams);
maxTokensInput.addEventListener("change", storeParams);

list.scrollTop = list.scrollHeight;
updateControls();
connect();
input.focus();
