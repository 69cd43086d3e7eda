// Silo web UI niceties. Every page works without this file: forms post and
// pages redirect on their own. The Content-Security-Policy allows no inline
// scripts, so behaviour is attached here through data attributes.
(function () {
  "use strict";

  // <form data-confirm="Question?">: ask before submitting.
  document.addEventListener("submit", function (e) {
    var form = e.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      e.preventDefault();
    }
  });

  // <button data-copy="input-id" hidden>: copy the input's value. The button
  // is hidden until this script shows it, since it needs JavaScript.
  function setupCopy(btn) {
    var input = document.getElementById(btn.getAttribute("data-copy"));
    if (!input) return;
    btn.hidden = false;
    var label = btn.innerHTML;
    btn.addEventListener("click", function () {
      input.focus();
      input.select();
      var done = function () {
        btn.textContent = "Copied";
        setTimeout(function () { btn.innerHTML = label; }, 2000);
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(input.value).then(done, function () { document.execCommand("copy"); done(); });
      } else {
        document.execCommand("copy");
        done();
      }
    });
  }

  // Select a whole secret with one click, ready to copy.
  function setupSecret(input) {
    input.addEventListener("focus", function () { input.select(); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("[data-copy]"), setupCopy);
    Array.prototype.forEach.call(document.querySelectorAll(".secret-value"), setupSecret);
  });
})();
