// The dashboards' charts (issue 22): the options are built by the server (bot/console/dashboards.py) and
// embedded as JSON; each chart has its table beside it (kept open without JavaScript, folded here).
(function () {
  "use strict";
  function start() {
    var source = document.getElementById("dash-charts");
    if (!source || typeof echarts === "undefined") { return; }
    var options = JSON.parse(source.textContent);
    var charts = [];
    document.querySelectorAll("[data-chart]").forEach(function (el) {
      var option = options[el.getAttribute("data-chart")];
      if (!option) { return; }
      var chart = echarts.init(el, null, { renderer: "canvas" });
      chart.setOption(option);
      charts.push(chart);
      var details = el.parentNode.querySelector("details.table-view");
      if (details) { details.open = false; }
      el.setAttribute("data-rendered", "1");
    });
    window.addEventListener("resize", function () { charts.forEach(function (c) { c.resize(); }); });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
