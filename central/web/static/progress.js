/* The citizens' progress page, kept live by server-sent events (polling where a browser
   or a proxy cannot hold a stream). Every word comes from the server: this script only
   puts it in place, and alerts once (sound where the citizen turned it on, vibration
   where the browser allows) when 3 or fewer are ahead and when the number is called.
   Plain ES5: WeChat's in-app browser and old Android phones. */
(function () {
  "use strict";
  var root = document.getElementById("q");
  var token = root.getAttribute("data-token");
  var lang = root.getAttribute("data-lang");
  var words = JSON.parse(document.getElementById("q-text").textContent);
  var base = "/q/" + token;
  var store = window.sessionStorage;
  var saved = window.localStorage;
  var audio = null;
  var pollTimer = null;
  var failures = 0;
  window.__progress = {updates: 0, alerts: [], vibrations: 0, beeps: 0, mode: "stream"};

  function $(id) { return document.getElementById(id); }

  function show(id, text) {
    var el = $(id);
    el.textContent = text || "";
    el.hidden = !text;
  }

  function render(page) {
    window.__progress.updates += 1;
    root.setAttribute("data-state", page.state);
    root.setAttribute("data-live", page.live ? "yes" : "no");
    $("number").textContent = page.number;
    $("service").textContent = page.service;
    $("headline").textContent = page.headline;
    show("detail", page.detail);
    show("advice", page.advice);
    show("notice", page.notice);
    $("status").textContent = page.status;
    $("updated").textContent = page.updated || "";
    $("updated-line").hidden = !(page.live && page.updated);  // else the status says when
    $("link").hidden = true;
    failures = 0;
    show("alert", page.alert ? words[page.alert] : "");
    alertOnce(page.alert);
  }

  function alertOnce(kind) {
    var key = "alerted:" + token;
    if (!kind || store.getItem(key) === kind) { return; }
    store.setItem(key, kind);
    window.__progress.alerts.push(kind);
    if (navigator.vibrate) {
      try {
        if (navigator.vibrate(kind === "called" ? [400, 200, 400, 200, 400] : [300])) {
          window.__progress.vibrations += 1;
        }
      } catch (e) { /* not allowed here */ }
    }
    beep(kind === "called" ? 3 : 1);
  }

  function beep(times) {
    if (!audio) { return; }
    for (var i = 0; i < times; i += 1) {
      var osc = audio.createOscillator();
      var gain = audio.createGain();
      osc.frequency.value = 880;
      gain.gain.value = 0.3;
      osc.connect(gain);
      gain.connect(audio.destination);
      osc.start(audio.currentTime + i * 0.5);
      osc.stop(audio.currentTime + i * 0.5 + 0.3);
    }
    window.__progress.beeps += times;
  }

  function lost() { $("link").hidden = false; }

  function poll() {
    window.__progress.mode = "poll";
    var request = new XMLHttpRequest();
    request.open("GET", base + "/state?lang=" + lang);
    request.timeout = 15000;
    request.onload = function () {
      if (request.status === 200) { render(JSON.parse(request.responseText)); }
      else if (request.status === 410) { window.location.reload(); return; }
      else { lost(); }
      pollTimer = setTimeout(poll, 10000);
    };
    request.onerror = request.ontimeout = function () { lost(); pollTimer = setTimeout(poll, 10000); };
    request.send();
  }

  function stream() {
    if (!window.EventSource) { poll(); return; }
    var source = new EventSource(base + "/live?lang=" + lang);
    source.addEventListener("progress", function (event) { render(JSON.parse(event.data)); });
    source.addEventListener("expired", function () { source.close(); window.location.reload(); });
    source.onerror = function () {
      failures += 1;
      lost();
      // A proxy that cuts streams, or the stream quota full (429): poll instead.
      if (source.readyState === 2 || failures >= 3) {
        source.close();
        if (!pollTimer) { poll(); }
      }
    };
  }

  var big = $("big");
  function setBig(on) {
    document.documentElement.className = on ? "big" : "";
    big.textContent = big.getAttribute(on ? "data-on" : "data-off");
    try { saved.setItem("progress-big", on ? "1" : "0"); } catch (e) { /* private mode */ }
  }
  big.addEventListener("click", function () {
    setBig(document.documentElement.className !== "big");
  });
  setBig(/[?&]big=1/.test(window.location.search) || saved.getItem("progress-big") === "1");

  var sound = $("sound");
  sound.addEventListener("click", function () {
    var Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) { sound.hidden = true; return; }
    audio = audio || new Context();
    if (audio.resume) { audio.resume(); }  // audio needs the citizen's tap to start
    sound.textContent = sound.getAttribute("data-on");
    beep(1);
  });

  render(JSON.parse($("q-data").textContent));
  stream();
}());
