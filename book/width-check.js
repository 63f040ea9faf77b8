// The width check of `cargo xtask book --check-width`. It does nothing unless the page's address
// ends in `#width-check=W1,W2,...`. Then the page loads itself once per width, in a frame that
// wide (a browser window cannot be made as narrow as a phone, a frame can); each frame waits for
// mermaid to draw, lists every element of the text column that is wider than its box, and posts
// the list up. The page writes them all as JSON into `<pre id="width-check-result">`, for
// `chromium --headless --dump-dom` to read.
(() => {
    const hash = window.location.hash;
    const describe = (el) => {
        const text = (el.textContent || '').trim().replace(/\s+/g, ' ').slice(0, 60);
        const cls = el.className && typeof el.className === 'string'
            ? '.' + el.className.trim().split(/\s+/).join('.') : '';
        return el.tagName.toLowerCase() + cls + (text ? ' "' + text + '"' : '');
    };
    const measure = () => {
        const main = document.querySelector('main');
        const column = main.getBoundingClientRect();
        const found = [];
        const reported = [];
        for (const el of main.querySelectorAll('*')) {
            // A diagram is measured as a whole: inside it, mermaid's labels sit in boxes scaled
            // with the drawing, which would read as cut off.
            if (reported.some((r) => r.contains(el)) || el.closest('svg') !== el && el.closest('svg')) {
                continue;
            }
            const style = window.getComputedStyle(el);
            if (['inline', 'contents', 'none'].includes(style.display)) {
                continue;
            }
            const rect = el.getBoundingClientRect();
            const scrolls = style.overflowX === 'auto' || style.overflowX === 'scroll';
            const entry = { element: describe(el), tag: el.closest('pre') ? 'pre' : el.tagName.toLowerCase() };
            if (el.scrollWidth - el.clientWidth > 1 && el.clientWidth > 0) {
                found.push({ ...entry, kind: scrolls ? 'scrolls' : 'is cut off', content: el.scrollWidth, box: el.clientWidth });
                reported.push(el);
            } else if (rect.right > column.right + 1 && rect.width > 0) {
                found.push({ ...entry, kind: 'sticks out of the column', content: Math.round(rect.right - column.left), box: Math.round(column.width) });
                reported.push(el);
            }
        }
        const page = document.documentElement;
        if (page.scrollWidth > window.innerWidth + 1) {
            found.push({ element: 'the page', tag: 'html', kind: 'scrolls sideways', content: page.scrollWidth, box: window.innerWidth });
        }
        const broken = Array.from(document.querySelectorAll('pre.mermaid'))
            .filter((pre) => pre.querySelector('svg[aria-roledescription="error"]') || !pre.querySelector('svg'))
            .map((pre) => pre.textContent.trim().replace(/\s+/g, ' ').slice(0, 60));
        return { width: window.innerWidth, overflows: found, broken_diagrams: broken };
    };
    if (hash === '#width-check-frame') {
        const started = Date.now();
        const report = () => {
            const pending = document.querySelectorAll('pre.mermaid:not([data-processed])');
            if (pending.length > 0 && Date.now() - started < 20000) {
                setTimeout(report, 50);
                return;
            }
            window.parent.postMessage({ widthCheck: measure() }, '*');
        };
        window.addEventListener('load', () => setTimeout(report, 0));
    } else if (hash.startsWith('#width-check=')) {
        const widths = hash.slice('#width-check='.length).split(',').map(Number);
        const results = [];
        window.addEventListener('message', (event) => {
            if (!event.data || !event.data.widthCheck) {
                return;
            }
            results.push(event.data.widthCheck);
            if (results.length === widths.length) {
                const out = document.createElement('pre');
                out.id = 'width-check-result';
                out.textContent = JSON.stringify({ results });
                document.body.appendChild(out);
            }
        });
        window.addEventListener('load', () => {
            for (const width of widths) {
                const frame = document.createElement('iframe');
                frame.style.cssText = 'position:absolute;left:0;top:0;border:0;height:900px;width:' + width + 'px';
                frame.src = window.location.href.split('#')[0] + '#width-check-frame';
                document.body.appendChild(frame);
            }
        });
    }
})();
