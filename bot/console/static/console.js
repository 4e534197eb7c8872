// The staff console (issue 22): small progressive enhancements; every page works without this file.
(function () {
  "use strict";
  // Forms marked data-confirm ask before they post (cancelling a ticket, ...).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form && form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); }
  });
  // htmx requests carry the session's CSRF token (read from the page's meta tag when there is one).
  document.addEventListener("htmx:configRequest", function (event) {
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (meta) { event.detail.headers["X-CSRF-Token"] = meta.getAttribute("content"); }
  });
})();
