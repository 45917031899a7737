// Refund Desk: the little behaviour the pages need beyond htmx attributes.
// No inline scripts (CSP script-src 'self'); htmx itself is configured by the
// <meta name="htmx-config"> tag in base.html.
//
// What lives here:
//   1. toasts for errors htmx would otherwise swallow;
//   2. the live page: one event stream per page for what it shows ([data-watch]); a hint
//      from it makes every element listening for that hint ([data-live-on]) fetch its
//      part of the page again, rendered from the database (web/live.py);
//   3. no lost clicks: answers to an older input never overwrite a newer one, the refund
//      button is patched in place (never replaced under the pointer), and a live refresh
//      waits while the element it would replace is pressed or holds the focus;
//   4. the keyboard: "/" to search, arrows from the search box to the results, the amount
//      focused on arrival, Enter on the reason submits; dates typed and picked as ISO;
//   5. the browser's time zone, offered once to a user who has not chosen one.
(function () {
  "use strict";

  // ---------------------------------------------------------------- 1. toasts

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
    if (xhr.status === 422) return; // a refused form: its messages were swapped in
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

  // Informational toasts ("Antom is still processing the refund") leave by themselves.
  document.addEventListener("htmx:afterSwap", function (evt) {
    if (evt.detail.target !== toasts()) return;
    var last = toasts().lastElementChild;
    if (last && last.classList.contains("toast-info")) {
      window.setTimeout(function () { last.remove(); }, 8000);
    }
  });

  // ---------------------------------------------------------------- 2. the live page

  var live = { source: null, keys: null, names: {}, retry: 0, timer: null };

  function watchQuery() {
    var parts = [];
    document.querySelectorAll("[data-watch]").forEach(function (el) {
      var value = el.getAttribute("data-watch");
      if (value) parts.push(value);
    });
    return parts.join("&");
  }

  // What the stream watches, without the versions: a refresh that only moved versions
  // keeps the stream; new rows (new things to watch) reconnect it.
  function watchKeys(query) {
    return query.split("&").filter(Boolean).map(function (pair) {
      var eq = pair.indexOf("=");
      var name = eq < 0 ? pair : pair.slice(0, eq);
      var value = eq < 0 ? "" : decodeURIComponent(pair.slice(eq + 1));
      return name === "payment" || name === "refund" ? name + "=" + value.split(".")[0] : name;
    }).sort().join("&");
  }

  function setLiveStatus(state) {
    var status = document.getElementById("live-status");
    if (!status) return;
    status.setAttribute("data-live", state);
    status.textContent = { on: "Live", off: "Reconnecting…", idle: "" }[state] || "";
  }

  function liveElements(name) {
    return Array.prototype.filter.call(document.querySelectorAll("[data-live-on]"), function (el) {
      return name === null || el.getAttribute("data-live-on").split(" ").indexOf(name) >= 0;
    });
  }

  function refresh(name) {
    liveElements(name).forEach(function (el) { htmx.trigger(el, "live"); });
  }

  function listenForHints() {
    if (!live.source) return;
    liveElements(null).forEach(function (el) {
      el.getAttribute("data-live-on").split(" ").forEach(function (name) {
        if (!name || live.names[name]) return;
        live.names[name] = true;
        live.source.addEventListener(name, function () { refresh(name); });
      });
    });
  }

  function connect() {
    var base = document.body.getAttribute("data-events-url");
    if (!base) return;
    var query = watchQuery();
    var keys = watchKeys(query);
    if (keys === live.keys && (live.source || !keys)) {
      listenForHints();
      return;
    }
    if (live.source) live.source.close();
    window.clearTimeout(live.timer);
    live.keys = keys;
    live.source = null;
    live.names = {};
    if (!keys) {
      setLiveStatus("idle");
      return;
    }
    var source = new EventSource(base + "?" + query);
    live.source = source;
    source.addEventListener("ready", function () {
      live.retry = 0;
      setLiveStatus("on");
    });
    source.onerror = function () {
      if (live.source !== source) return;
      setLiveStatus("off");
      // The browser retries a dropped stream by itself; one the server refused is
      // closed for good, so open a new one, waiting longer each time (up to 30 s).
      if (source.readyState === EventSource.CLOSED) {
        live.retry = Math.min(live.retry * 2 || 1, 30);
        live.keys = null;
        live.source = null;
        live.timer = window.setTimeout(connect, live.retry * 1000);
      }
    };
    listenForHints();
  }

  // After any swap: new things may be on show (reconnect), new hints to listen for.
  document.addEventListener("htmx:afterSettle", function () { connect(); });

  // An action that changed what the page shows ("check now", a resolved alert): re-read
  // every live part of the page, stream or no stream (web/htmx.py STALE).
  document.body.addEventListener("desk:stale", function () { refresh(null); });

  // ---------------------------------------------------------------- 3. no lost clicks

  // A form marked data-latest-wins applies only the answer to its newest check, and none
  // while it is being submitted: an answer to an older input never overwrites a newer one.
  // A refresh marked data-check-form="<form id>" judges that form too: its answer keeps
  // the rest of the page, and drops only the form's part when it is no longer the newest.
  function checkedForm(elt) {
    if (elt.hasAttribute && elt.hasAttribute("data-check-form")) {
      return document.getElementById(elt.getAttribute("data-check-form"));
    }
    return elt.closest ? elt.closest("form[data-latest-wins]") : null;
  }

  document.addEventListener("htmx:beforeRequest", function (evt) {
    var elt = evt.detail.elt;
    var form = checkedForm(elt);
    if (!form) return;
    var xhr = evt.detail.xhr;
    if (elt === form) {
      form.deskSubmitting = (form.deskSubmitting || 0) + 1;
      form.setAttribute("aria-busy", "true");
      xhr.deskSubmitOf = form;
    } else if (elt.hasAttribute("data-check") || elt.hasAttribute("data-check-form")) {
      form.deskSeq = (form.deskSeq || 0) + 1;
      xhr.deskSeq = form.deskSeq;
      xhr.deskForm = form;
      xhr.deskPartial = elt.hasAttribute("data-check-form");
    }
  });

  // While an answer is being swapped (synchronously): the form whose part it must leave.
  var staleFormPart = null;

  document.addEventListener("htmx:beforeSwap", function (evt) {
    var xhr = evt.detail.xhr;
    if (!xhr.deskSeq) return;
    var form = xhr.deskForm;
    var gone = !document.body.contains(form);
    if (!(gone || form.deskSubmitting || xhr.deskSeq !== form.deskSeq)) return;
    if (!xhr.deskPartial) {
      evt.detail.shouldSwap = false;
      return;
    }
    // The form that is on the page now (a submit may have replaced the one asked about).
    staleFormPart = gone ? document.getElementById(form.id) : form;
    window.setTimeout(function () { staleFormPart = null; }, 0);
  });

  document.addEventListener("htmx:afterRequest", function (evt) {
    var form = evt.detail.xhr && evt.detail.xhr.deskSubmitOf;
    if (!form) return;
    form.deskSubmitting = Math.max(0, (form.deskSubmitting || 1) - 1);
    if (!form.deskSubmitting) form.removeAttribute("aria-busy");
  });

  // Which live refresh is being swapped right now (swaps run synchronously).
  var swappingLive = null;
  document.addEventListener("htmx:beforeSwap", function (evt) {
    var elt = evt.detail.requestConfig && evt.detail.requestConfig.elt;
    swappingLive = elt && elt.hasAttribute && elt.hasAttribute("data-live-on") ? elt : null;
    if (swappingLive) window.setTimeout(function () { swappingLive = null; }, 0);
  });

  var pressed = null;
  var deferred = [];
  document.addEventListener("pointerdown", function (evt) { pressed = evt.target; }, true);
  function released() {
    // After the click has been dispatched: then the refresh may replace what was pressed.
    window.setTimeout(function () {
      pressed = null;
      var pending = deferred;
      deferred = [];
      pending.forEach(function (el) {
        if (document.body.contains(el)) htmx.trigger(el, "live");
      });
    }, 0);
  }
  document.addEventListener("pointerup", released, true);
  document.addEventListener("pointercancel", released, true);
  document.addEventListener("focusout", released, true);

  function isTyping(el) {
    return el.matches("input, textarea, select, [contenteditable]");
  }

  // Would replacing ``target`` now take something from the person? The element under a
  // held mouse button, a field being typed in, or a focused control htmx cannot give the
  // focus back to (it restores focus by id).
  function busy(target) {
    if (pressed && target.contains(pressed)) return true;
    var active = document.activeElement;
    if (!active || active === document.body || !target.contains(active)) return false;
    return isTyping(active) || !active.id;
  }

  document.addEventListener("htmx:oobBeforeSwap", function (evt) {
    var target = evt.detail.target;
    var incoming = evt.detail.fragment && evt.detail.fragment.firstElementChild;
    if (!incoming) return;

    // The form's part of a refresh the agent has typed past: hers is on its way.
    if (staleFormPart && staleFormPart.contains(target)) {
      evt.detail.shouldSwap = false;
      return;
    }

    // The refund button is patched, not replaced: a press that began on it ends on it.
    if (target.hasAttribute("data-patch")) {
      patch(target, incoming);
      evt.detail.shouldSwap = false;
      return;
    }

    // The amount the form offers moved: follow it, unless the agent typed her own.
    if (target.id === "refund-amount-default") {
      var amount = document.getElementById("refund-amount");
      if (amount && amount.value.trim() === target.value.trim() && incoming.value !== target.value) {
        var selected = document.activeElement === amount &&
          amount.selectionStart === 0 && amount.selectionEnd === amount.value.length;
        amount.value = incoming.value;
        if (selected) amount.select();
      }
      return;
    }

    if (!swappingLive) return;
    if (busy(target)) {
      evt.detail.shouldSwap = false;
      if (deferred.indexOf(swappingLive) < 0) deferred.push(swappingLive);
      return;
    }
    // Keep open what the reader opened (an Antom exchange on the timeline).
    var opened = Array.prototype.map.call(target.querySelectorAll("details"), function (d) { return d.open; });
    incoming.querySelectorAll("details").forEach(function (d, i) {
      if (opened[i]) d.setAttribute("open", "");
    });
  });

  function patch(target, incoming) {
    Array.prototype.slice.call(target.attributes).forEach(function (attr) {
      if (attr.name !== "id" && !incoming.hasAttribute(attr.name)) target.removeAttribute(attr.name);
    });
    Array.prototype.slice.call(incoming.attributes).forEach(function (attr) {
      if (target.getAttribute(attr.name) !== attr.value) target.setAttribute(attr.name, attr.value);
    });
    if (target.textContent !== incoming.textContent) target.textContent = incoming.textContent;
  }

  // ---------------------------------------------------------------- 4. the keyboard

  function searchBox() {
    return document.querySelector("input[type=search]");
  }

  function rowLinks() {
    var links = [];
    document.querySelectorAll(".results tbody tr").forEach(function (row) {
      var link = row.querySelector("a[href]");
      if (link) links.push(link);
    });
    return links;
  }

  document.addEventListener("keydown", function (evt) {
    if (evt.defaultPrevented || evt.altKey || evt.ctrlKey || evt.metaKey) return;
    var el = evt.target;

    // "/" anywhere but a field: to the search box (or to the payments list's).
    if (evt.key === "/" && !isTyping(el)) {
      var box = searchBox();
      evt.preventDefault();
      if (box) {
        box.focus();
        box.select();
      } else if (document.body.getAttribute("data-search-url")) {
        window.location.assign(document.body.getAttribute("data-search-url") + "#search");
      }
      return;
    }

    // Arrows walk from the search box into the results and between their rows.
    if (evt.key === "ArrowDown" || evt.key === "ArrowUp") {
      var links = rowLinks();
      var at = links.indexOf(el);
      if (el === searchBox() && evt.key === "ArrowDown" && links.length) {
        evt.preventDefault();
        links[0].focus();
      } else if (at >= 0) {
        evt.preventDefault();
        var next = at + (evt.key === "ArrowDown" ? 1 : -1);
        if (next >= 0 && next < links.length) links[next].focus();
        else if (next < 0 && searchBox()) searchBox().focus();
      }
      return;
    }

    // Enter on the reason submits the form, as Enter in a text field does.
    if (evt.key === "Enter" && el.matches("select[data-enter-submits]") && el.form) {
      evt.preventDefault();
      el.form.requestSubmit();
    }
  });

  function focusOnArrival() {
    if (document.activeElement && document.activeElement !== document.body) return;
    if (window.location.hash === "#search" && searchBox()) {
      searchBox().focus();
      return;
    }
    var field = document.querySelector("[data-focus-on-arrival]");
    if (field) {
      field.focus();
      // Selected, so typing replaces the amount offered.
      if (field.select) field.select();
    }
  }

  // Dates are typed and shown year first; the browser's calendar is behind a button,
  // through a hidden native date input whose choice is written back as YYYY-MM-DD.
  document.addEventListener("click", function (evt) {
    var button = evt.target.closest ? evt.target.closest(".date-pick") : null;
    if (!button) return;
    var name = button.getAttribute("data-date-for");
    var field = document.getElementById(name);
    var native = document.querySelector('[data-date-native="' + name + '"]');
    if (!field || !native || !native.showPicker) return;
    native.value = /^\d{4}-\d{2}-\d{2}$/.test(field.value) ? field.value : "";
    native.showPicker();
  });

  document.addEventListener("change", function (evt) {
    var native = evt.target;
    if (!native.matches || !native.matches("[data-date-native]")) return;
    var field = document.getElementById(native.getAttribute("data-date-native"));
    if (!field || field.value === native.value) return;
    field.value = native.value;
    field.dispatchEvent(new Event("change", { bubbles: true }));
    field.focus();
  });

  // A "Copy" button ([data-copy] naming a field): the field's text to the clipboard.
  document.addEventListener("click", function (evt) {
    var button = evt.target.closest ? evt.target.closest("[data-copy]") : null;
    if (!button) return;
    var field = document.getElementById(button.getAttribute("data-copy"));
    if (!field) return;
    var text = field.value !== undefined ? field.value : field.textContent;
    function done() { button.textContent = "Copied"; }
    function fallback() {
      field.focus();
      if (field.select) field.select();
      if (document.execCommand && document.execCommand("copy")) done();
      else showToast("Press Ctrl+C to copy the selected text");
    }
    if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(text).then(done, fallback);
    else fallback();
  });

  // ---------------------------------------------------------------- 5. the time zone

  function offerBrowserZone() {
    var url = document.body.getAttribute("data-zone-url");
    if (!url || window.sessionStorage.getItem("desk-zone-offered")) return;
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (!zone) return;
    window.sessionStorage.setItem("desk-zone-offered", "1");
    htmx.ajax("POST", url, { source: document.body, swap: "none", values: { time_zone: zone, source: "browser" } });
  }

  function suggestBrowserZone() {
    var select = document.querySelector("select[data-browser-zone]");
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (!select || !zone || select.value === zone) return;
    var option = select.querySelector('option[value="' + zone.replace(/"/g, "") + '"]');
    var hint = document.getElementById("browser-zone-hint");
    if (option && hint) hint.textContent = "Your browser is in " + zone + ".";
  }

  function start() {
    connect();
    focusOnArrival();
    offerBrowserZone();
    suggestBrowserZone();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
