// Home Mind dashboard: progressive enhancement only; every page works without it.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // Mailed links carry their token after "#" (never sent to a server): put it in the form.
  const match = /[#&]token=([A-Za-z0-9_-]+)/.exec(window.location.hash);
  for (const input of document.querySelectorAll("[data-fragment-token]")) {
    if (match && !input.value) {
      input.value = match[1];
      history.replaceState(null, "", window.location.pathname);
    }
  }
  // Copy buttons (shown only when the clipboard can be used).
  for (const button of document.querySelectorAll("button[data-copy]")) {
    const source = document.getElementById(button.dataset.copy);
    const status = document.querySelector("[data-copy-status]");
    if (!source || !navigator.clipboard) continue;
    button.hidden = false;
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(source.value);
        if (status) status.textContent = button.dataset.done || "Copied.";
      } catch {
        source.select();
        if (status) status.textContent = "Select the text and copy it.";
      }
    });
  }
});
