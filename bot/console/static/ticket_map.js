// The ticket file's check-in map (Leaflet, vendored). No tile server is contacted (the service may run
// offline): the map shows the check-in point and, when known, the store, with a scale; the coordinates
// are in the page's text for anyone without JavaScript.
(function () {
  "use strict";
  function draw() {
    var holder = document.getElementById("checkin-map");
    var coords = document.getElementById("checkin-coords");
    if (!holder || !coords || !window.L) { return; }
    var here = [parseFloat(coords.dataset.lat), parseFloat(coords.dataset.lng)];
    var map = L.map(holder, { attributionControl: false }).setView(here, 16);
    L.control.scale({ imperial: false }).addTo(map);
    L.circleMarker(here, { radius: 9, color: "#1f5fbf", fillOpacity: 0.8 }).addTo(map).bindTooltip("签到位置", { permanent: true });
    if (coords.dataset.storeLat) {
      var store = [parseFloat(coords.dataset.storeLat), parseFloat(coords.dataset.storeLng)];
      L.circleMarker(store, { radius: 7, color: "#9a5b00", fillOpacity: 0.6 }).addTo(map).bindTooltip("门店", { permanent: true });
      L.polyline([here, store], { color: "#5d6677", dashArray: "4 4" }).addTo(map);
      map.fitBounds(L.latLngBounds([here, store]).pad(0.3), { maxZoom: 16 });
    }
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", draw); } else { draw(); }
})();
