// Upload pages (Import orders, Import settlement): show the upload's progress while the
// file is sent. A form names its bar with data-upload-progress="<id of a <progress>>";
// htmx reports the XHR upload's progress as htmx:xhr:progress. The import's own progress
// is polled by the fragment the upload returns (templates/macros/imports.html).
(function () {
  "use strict";

  function bar(form) {
    var id = form && form.getAttribute && form.getAttribute("data-upload-progress");
    return id ? document.getElementById(id) : null;
  }

  document.addEventListener("htmx:xhr:progress", function (evt) {
    var progress = bar(evt.target);
    if (!progress || !evt.detail.lengthComputable) return;
    progress.hidden = false;
    progress.max = evt.detail.total;
    progress.value = evt.detail.loaded;
  });

  document.addEventListener("htmx:afterRequest", function (evt) {
    var progress = bar(evt.target);
    if (progress) progress.hidden = true;
  });
})();
