// Live figures without reloading the page (no <meta refresh>: it wipes what a person is typing and
// axe-core counts it as critical). A page opts in with an element carrying data-live-s (the period in
// seconds), a #live-status text and a #live-pause button; every period the page is fetched again and
// each element marked data-live (by its id) is replaced by its new version. Forms are outside those
// elements, so a half-typed zoom range stays; a paused page, or one in a background tab, is not fetched.
(function () {
  'use strict';
  const root = document.querySelector('[data-live-s]');
  if (!root) return;
  const period = Math.max(5, Number(root.dataset.liveS) || 30) * 1000;
  const status = document.getElementById('live-status');
  const button = document.getElementById('live-pause');
  let paused = false;
  const say = text => { if (status) status.textContent = text; };
  say('Updates every ' + period / 1000 + ' s.');
  if (button) {
    button.hidden = false;
    button.addEventListener('click', () => {
      paused = !paused;
      button.setAttribute('aria-pressed', String(paused));
      button.textContent = paused ? 'Resume updates' : 'Pause updates';
      say(paused ? 'Updates paused.' : 'Updates every ' + period / 1000 + ' s.');
      if (!paused) update();
    });
  }
  let timer = null;
  async function update() {
    if (paused || document.hidden) return;
    let response;
    try {
      response = await fetch(location.href, {
        credentials: 'same-origin',
        headers: { Accept: 'text/html' },
        cache: 'no-store',
      });
    } catch (e) {
      say('Update failed (' + e.message + '); trying again in ' + period / 1000 + ' s.');
      return;
    }
    if (!response.ok) {
      say('Update failed (HTTP ' + response.status + '); trying again in ' + period / 1000 + ' s.');
      return;
    }
    const page = new DOMParser().parseFromString(await response.text(), 'text/html');
    for (const old of document.querySelectorAll('[data-live][id]')) {
      const fresh = page.getElementById(old.id);
      if (!fresh) continue;
      // Charts are images the server does not let a cache keep; a new query makes the browser ask
      // again rather than reuse the image it decoded for the same address.
      for (const img of fresh.querySelectorAll('img[src]')) {
        const url = new URL(img.getAttribute('src'), location.href);
        url.searchParams.set('t', String(Date.now()));
        img.setAttribute('src', url.pathname + url.search);
      }
      old.replaceWith(document.importNode(fresh, true));
    }
    if (!page.querySelector('[data-live-s]')) {
      clearInterval(timer);
      if (button) button.hidden = true;
      say('No longer live (the job has ended): reload for the final page.');
      return;
    }
    say('Updates every ' + period / 1000 + ' s; last at ' + new Date().toLocaleTimeString() + '.');
  }
  timer = setInterval(update, period);
})();
