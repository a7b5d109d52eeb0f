// The inbox: compose, star, bulk actions through the REST API, and the list refreshed live when a
// message arrives (the server renders the list; this only swaps it in).
import { api, on, setUnread } from "./common.js";

const live = document.getElementById("messages-live");

async function refresh() {
  if (!live) return;
  const query = new URLSearchParams({ folder: live.dataset.folder, q: live.dataset.q });
  const res = await fetch(`/inbox/messages?${query}`, { credentials: "same-origin" });
  if (!res.ok) return;
  live.innerHTML = await res.text();
  const bulk = live.querySelector("#bulk");
  if (bulk) setUnread(Number(bulk.dataset.unread));
}

function say(form, text) {
  const status = form.querySelector(".bulk-status");
  if (status) status.textContent = text;
}

document.addEventListener("click", async (e) => {
  const button = e.target.closest("#bulk [data-action]");
  const star = e.target.closest("#bulk [data-star]");
  if (!button && !star) return;
  const form = e.target.closest("form");
  try {
    if (star) {
      await api("PATCH", `/api/v2/messages/${star.dataset.star}`, { is_starred: star.getAttribute("aria-pressed") !== "true" });
    } else {
      const ids = Array.from(form.querySelectorAll('input[name="ids"]'))
        .filter((i) => i.type === "hidden" || i.checked)
        .map((i) => i.value);
      if (!ids.length) return say(form, "Select messages first.");
      await api("PUT", "/api/v2/messages/bulk", { ids, action: button.dataset.action });
      if (form.dataset.single) return button.dataset.action === "delete" ? location.assign("/inbox") : location.reload();
    }
    await refresh();
  } catch (err) {
    say(form, err.message);
  }
});

const compose = document.getElementById("compose-form");
if (compose) {
  const status = document.getElementById("compose-status");
  compose.addEventListener("submit", async (e) => {
    e.preventDefault();
    const data = Object.fromEntries(new FormData(compose));
    try {
      await api("POST", "/api/v2/messages", data);
      status.textContent = `Sent to ${data.recipient_email}.`;
      compose.reset();
      if (live && live.dataset.folder === "sent") await refresh();
    } catch (err) {
      status.textContent = `Not sent: ${err.message}`;
    }
  });
}

on("new_message", refresh);
on("open", refresh); // catch up on what arrived while the socket was down
