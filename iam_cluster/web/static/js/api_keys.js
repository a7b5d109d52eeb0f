// API keys: create one (its secret shown once, here) and revoke, through the REST API.
import { api } from "./common.js";

const form = document.getElementById("new-key");
const status = document.getElementById("key-status");

form.addEventListener("submit", async (e) => {
  e.preventDefault();
  const data = new FormData(form);
  try {
    const created = await api("POST", "/api/v1/api-keys", { name: data.get("name"), scopes: data.getAll("scopes") });
    const shown = document.getElementById("new-key-value");
    shown.value = created.key;
    document.getElementById("new-key-shown").hidden = false;
    shown.focus();
    shown.select();
    status.textContent = `Key “${created.name}” created. Reload the page to see it in the list.`;
  } catch (err) {
    status.textContent = `Not created: ${err.message}`;
  }
});

for (const button of document.querySelectorAll("[data-revoke]")) {
  button.addEventListener("click", async () => {
    try {
      await api("DELETE", `/api/v1/api-keys/${button.dataset.revoke}`);
      location.reload();
    } catch (err) {
      status.textContent = `Not revoked: ${err.message}`;
    }
  });
}
