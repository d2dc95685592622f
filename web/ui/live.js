// Refreshes <main> while the page says something is active
// (body[data-live]), keeping focus and scroll; the Pause button stops it.
(function () {
  var period = parseInt(document.body.dataset.live || "0", 10);
  if (!period) return;
  var paused = false;
  var button = document.getElementById("pause");
  if (button) button.addEventListener("click", function () {
    paused = !paused;
    button.textContent = paused ? "Resume" : "Pause";
  });
  setInterval(function () {
    if (paused || document.hidden) return;
    fetch(location.href, { credentials: "same-origin" }).then(function (r) {
      return r.ok ? r.text() : null;
    }).then(function (html) {
      if (!html) return;
      var next = new DOMParser().parseFromString(html, "text/html").querySelector("main");
      var main = document.querySelector("main");
      if (!next || !main || next.innerHTML === main.innerHTML) return;
      var focused = document.activeElement && document.activeElement.id;
      main.innerHTML = next.innerHTML;
      if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
    }).catch(function () {});
  }, period);
})();
