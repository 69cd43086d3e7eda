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

  // A runner form's defaults that follow its name as it is typed: elements
  // with data-template ("s3://ws-{name}.silo", "{bare}storage") show it with
  // the name (bare: without dashes), as a placeholder or as their text.
  function setupDerived(form) {
    var input = form.querySelector("[data-name-input]");
    var targets = form.querySelectorAll("[data-template]");
    if (!input || !targets.length) return;
    function update() {
      var name = input.value.trim().toLowerCase();
      Array.prototype.forEach.call(targets, function (el) {
        var t = el.getAttribute("data-template");
        var v = t.split("{name}").join(name || "<name>")
          .split("{bare}").join(name ? name.split("-").join("") : "<name without dashes>");
        if (el.tagName === "INPUT") {
          el.placeholder = v;
        } else {
          el.textContent = v;
        }
      });
    }
    input.addEventListener("input", update);
  }

  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("[data-copy]"), setupCopy);
    Array.prototype.forEach.call(document.querySelectorAll(".secret-value"), setupSecret);
    Array.prototype.forEach.call(document.querySelectorAll("form"), setupDerived);
  });
})();
