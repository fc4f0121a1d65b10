// Izzi Gateway dashboard: conveniences only; every page and form works without this file.
"use strict";
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  if (!source || !navigator.clipboard) return;
  navigator.clipboard.writeText(source.textContent.trim()).then(() => {
    const was = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = was; }, 1500);
  });
});
document.addEventListener("submit", (event) => {
  const question = event.target.dataset.confirm;
  if (question && !window.confirm(question)) event.preventDefault();
});
document.querySelectorAll("[data-copy]").forEach((button) => { button.hidden = !navigator.clipboard; });
// A form sent once: its buttons wait for the next page (the server makes a top-up sent
// twice credit once anyway).
document.addEventListener("submit", (event) => {
  if (event.defaultPrevented) return;
  setTimeout(() => event.target.querySelectorAll("button[type=submit]").forEach((b) => { b.disabled = true; }), 0);
});
