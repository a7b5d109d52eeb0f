// Shared by every page: fetch with the CSRF token, the live event socket, the inbox badge.
// Credentials never reach scripts: the session cookie is HttpOnly; the CSRF token comes from a meta tag.

const meta = document.querySelector('meta[name="csrf-token"]');
const csrfToken = meta ? meta.content : "";

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

function parse(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

// A call to the REST API with the session cookie; the API's error message becomes the thrown Error's.
export async function api(method, url, body) {
  const init = { method, credentials: "same-origin", headers: { "X-CSRFToken": csrfToken, Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(url, init);
  const data = parse(await res.text());
  if (!res.ok) throw new ApiError((data && data.error && data.error.message) || `${res.status} ${res.statusText}`, res.status);
  return data;
}

export { csrfToken };

// Live events: one socket per page; each event is re-dispatched as a DOM event "iam:<type>".
export function on(type, handler) {
  document.addEventListener(`iam:${type}`, (e) => handler(e.detail || {}));
}

function emit(type, detail) {
  document.dispatchEvent(new CustomEvent(`iam:${type}`, { detail }));
}

let delay = 500;
function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(`${scheme}//${location.host}/api/v2/messages/ws`);
  let ping;
  socket.addEventListener("open", () => {
    delay = 500;
    document.body.dataset.socket = "open";
    ping = setInterval(() => socket.send('{"type":"ping"}'), 25000);
    emit("open", {});
  });
  socket.addEventListener("message", (e) => {
    const event = parse(e.data);
    if (event && event.type) emit(event.type, event.data);
  });
  socket.addEventListener("close", (e) => {
    clearInterval(ping);
    document.body.dataset.socket = "closed";
    if (e.code === 4401) return; // signed out: nothing to listen to
    setTimeout(connect, delay); // events missed meanwhile are caught up by each page's REST refresh
    delay = Math.min(delay * 2, 15000);
  });
}

const badge = document.getElementById("unread-badge");
const label = document.getElementById("unread-label");
export function setUnread(count) {
  if (!badge) return;
  badge.dataset.count = String(count);
  badge.textContent = String(count);
  badge.hidden = count <= 0;
  if (label) label.textContent = ` (${count} unread)`;
}

on("new_message", () => setUnread(Number(badge ? badge.dataset.count : 0) + 1));

if (document.body.dataset.live) connect();
