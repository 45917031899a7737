// Import orders page: show the upload's progress while the file is sent (htmx reports
// the XHR upload's progress as htmx:xhr:progress). The import's own progress is polled
// by the fragment the upload returns (templates/orders/_import.html).
(function () {
  "use strict";

  function bar() {
    return document.getElementById("upload-progress");
  }

  document.addEventListener("htmx:xhr:progress", function (evt) {
    var progress = bar();
    if (!progress || !evt.detail.lengthComputable || evt.target.id !== "order-upload") return;
    progress.hidden = false;
    progress.max = evt.detail.total;
    progress.value = evt.detail.loaded;
  });

  document.addEventListener("htmx:afterRequest", function (evt) {
    var progress = bar();
    if (progress && evt.target.id === "order-upload") progress.hidden = true;
  });
})();
