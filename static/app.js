// Refund Desk: the little behaviour the pages need beyond htmx attributes.
// No inline scripts (CSP script-src 'self'); htmx itself is configured by the
// <meta name="htmx-config"> tag in base.html.
(function () {
  "use strict";

  function toasts() {
    return document.getElementById("toasts");
  }

  // Shows a message in the toast area; text only, never HTML from a response.
  function showToast(message) {
    var box = toasts();
    if (!box) return;
    var toast = document.createElement("div");
    toast.className = "toast toast-bad";
    toast.setAttribute("role", "alert");
    var text = document.createElement("p");
    text.textContent = message;
    var close = document.createElement("button");
    close.type = "button";
    close.className = "toast-close";
    close.setAttribute("aria-label", "Dismiss");
    close.textContent = "×";
    toast.appendChild(text);
    toast.appendChild(close);
    box.appendChild(toast);
  }

  function isToastError(xhr) {
    return xhr && xhr.getResponseHeader("HX-Retarget") === "#toasts";
  }

  // Our error handlers answer htmx with a fragment aimed at #toasts: let it swap
  // there even though the status is 4xx/5xx (htmx 2 swaps no errors by default).
  document.addEventListener("htmx:beforeSwap", function (evt) {
    if (evt.detail.xhr.status >= 400 && isToastError(evt.detail.xhr)) {
      evt.detail.shouldSwap = true;
    }
  });

  // Any other failed response (proxy error page, timeout page): say so, swap nothing.
  document.addEventListener("htmx:responseError", function (evt) {
    var xhr = evt.detail.xhr;
    if (isToastError(xhr) || xhr.getResponseHeader("HX-Redirect")) return;
    showToast("The desk answered with an error (" + xhr.status + "). Reload the page to see the current state.");
  });

  document.addEventListener("htmx:sendError", function () {
    showToast("Could not reach the desk. Check your connection and try again.");
  });

  document.addEventListener("htmx:timeout", function () {
    showToast("The desk took too long to answer. Reload the page to see the current state.");
  });

  document.addEventListener("click", function (evt) {
    var button = evt.target.closest ? evt.target.closest(".toast-close") : null;
    if (button && button.parentElement) button.parentElement.remove();
  });
})();
