// qunbot console: small progressive enhancements; every page works without them.
"use strict";
(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";

  // Room pickers submit on change.
  document.querySelectorAll("select[data-autosubmit]").forEach((sel) => {
    sel.addEventListener("change", () => sel.form.submit());
  });

  // Destructive buttons ask first.
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (ev) => {
      if (!window.confirm(form.dataset.confirm)) ev.preventDefault();
    });
  });

  // Announcement draft preview: rendered by the bot's own template code, changes nothing.
  const btn = document.getElementById("preview-btn");
  if (btn) {
    btn.addEventListener("click", async () => {
      const form = btn.form;
      const body = new URLSearchParams({ room: form.room.value, text: form.text.value });
      const out = document.getElementById("preview");
      const resp = await fetch("/announcements/preview", {
        method: "POST", body, headers: { "X-CSRF-Token": csrf }, credentials: "same-origin",
      });
      out.textContent = resp.ok ? (await resp.json()).preview : "preview failed: " + resp.status;
    });
  }

  window.qunbot = { csrf };
})();
