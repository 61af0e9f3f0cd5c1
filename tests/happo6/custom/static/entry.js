// A happo 6 "custom integration" page, written by hand without any happo library.
//
// happo 6 packages the folder this file lives in (a copy of it: see ../happo.config.mjs) and,
// since the folder has no iframe.html, writes one whose <body> holds only
// `<script src="entry.js"></script>`. The renderer opens /iframe.html, waits for
// `window.happo.nextExample`, calls `await window.happo.init({targetName, chunk, only})` once,
// then `await window.happo.nextExample()` until it resolves to nothing, screenshotting after
// each one. This mirrors what `happo/custom` (the helper the package ships) does:
//   * init() reads the skip list from <script type="application/json" id="happo-skipped">
//     (injected into iframe.html by `happo --skip`), then filters by `only` ({component,
//     variant}), else by `chunk` ({index, total}), then by `targetName` (per-example targets);
//   * nextExample() renders the next example, awaits it, and resolves
//     {component, variant, targets, waitForContent}.
(function () {
  'use strict';

  function ensureStylesheet() {
    if (!document.querySelector('link[data-fixture]')) {
      var link = document.createElement('link');
      link.rel = 'stylesheet';
      link.href = 'styles.css';
      link.setAttribute('data-fixture', '');
      document.head.appendChild(link);
    }
    return new Promise(function (resolve) {
      var link = document.querySelector('link[data-fixture]');
      if (link.sheet) {
        resolve();
      } else {
        link.addEventListener('load', function () { resolve(); });
        link.addEventListener('error', function () { resolve(); });
      }
    });
  }

  function show(html) {
    return ensureStylesheet().then(function () {
      document.body.innerHTML = html;
    });
  }

  var EXAMPLES = [
    {
      component: 'Button',
      variant: 'primary',
      render: function () { return show('<button class="btn primary">Primary</button>'); },
    },
    {
      component: 'Button',
      variant: 'secondary',
      render: function () { return show('<button class="btn secondary">Secondary</button>'); },
    },
    {
      component: 'Card',
      variant: 'with image',
      waitForContent: 'Loaded later',
      render: function () {
        return show(
          '<div class="card"><img src="img/dots.png" alt=""> <span id="late"></span></div>'
        ).then(function () {
          // Content that arrives after render() resolved: the renderer's waitForContent
          // poll must see it.
          setTimeout(function () {
            document.getElementById('late').textContent = 'Loaded later';
          }, 300);
        });
      },
    },
  ];

  var queue = [];
  var index = 0;

  function readSkipped() {
    var el = document.getElementById('happo-skipped');
    if (!el) {
      return [];
    }
    try {
      var parsed = JSON.parse(el.textContent);
      return Array.isArray(parsed) ? parsed : [];
    } catch (e) {
      return [];
    }
  }

  function isSkipped(skipped, example) {
    return skipped.some(function (item) {
      return item.component === example.component &&
        (item.variant === undefined || item.variant === example.variant);
    });
  }

  window.happo = window.happo || {};

  window.happo.init = function (options) {
    options = options || {};
    var skipped = readSkipped();
    queue = EXAMPLES.filter(function (e) { return !isSkipped(skipped, e); });
    if (options.only) {
      queue = queue.filter(function (e) {
        return e.component === options.only.component && e.variant === options.only.variant;
      });
    } else if (options.chunk) {
      var per = Math.ceil(queue.length / options.chunk.total);
      queue = queue.slice(options.chunk.index * per, options.chunk.index * per + per);
    }
    if (options.targetName) {
      queue = queue.filter(function (e) {
        return !e.targets || e.targets.indexOf(options.targetName) !== -1;
      });
    }
    index = 0;
  };

  window.happo.nextExample = function () {
    var example = queue[index];
    if (!example) {
      return Promise.resolve(undefined);
    }
    index += 1;
    return Promise.resolve(example.render()).then(function () {
      return {
        component: example.component,
        variant: example.variant,
        targets: example.targets,
        waitForContent: example.waitForContent,
      };
    });
  };
})();
