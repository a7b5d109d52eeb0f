// Plan page: upgrades go through Stripe Checkout, management through Stripe's customer portal.
import { api } from "./common.js";

const error = document.getElementById("billing-error");

async function go(path, body) {
  try {
    location.assign((await api("POST", path, body)).url);
  } catch (err) {
    error.textContent = err.message;
    error.hidden = false;
  }
}

for (const button of document.querySelectorAll("[data-plan]")) {
  button.addEventListener("click", () => go("/api/v1/billing/subscribe", { plan: button.dataset.plan }));
}
const portal = document.getElementById("portal");
if (portal) portal.addEventListener("click", () => go("/api/v1/billing/portal"));
