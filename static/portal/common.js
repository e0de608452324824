// Small behaviours shared by every page. Each one only improves a page that already works
// without script: forms still post, buttons still submit.

// Buttons that only matter without script (e.g. "Switch" next to a select that submits itself).
for (const element of document.querySelectorAll("[data-hide-with-js]")) {
  element.hidden = true;
}

// A select that submits its form as soon as it changes (the organisation switcher).
for (const select of document.querySelectorAll("select[data-autosubmit]")) {
  select.addEventListener("change", () => select.form.requestSubmit());
}

// Destructive forms ask first.
for (const form of document.querySelectorAll("form[data-confirm]")) {
  form.addEventListener("submit", (event) => {
    if (!window.confirm(form.dataset.confirm)) event.preventDefault();
  });
}

// Copy buttons (the API token shown once).
for (const button of document.querySelectorAll("button[data-copy]")) {
  button.hidden = false;
  button.addEventListener("click", async () => {
    const source = document.getElementById(button.dataset.copy);
    try {
      await navigator.clipboard.writeText(source.value ?? source.textContent);
      button.textContent = "Copied";
    } catch {
      source.select?.();
      button.textContent = "Press Ctrl+C to copy";
    }
  });
}

// Fields that only matter for one choice of a select (a limit's member or credential).
for (const part of document.querySelectorAll("[data-shown-by]")) {
  const select = document.getElementById(part.dataset.shownBy);
  if (!select) continue;
  const sync = () => {
    part.hidden = select.value !== part.dataset.shownFor;
  };
  select.addEventListener("change", sync);
  sync();
}
