/** A tiny element builder: the extension draws plain DOM to keep its bundle small. */

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: (Node | string | null | undefined)[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === 'class') {
      el.className = value;
    } else {
      el.setAttribute(key, value);
    }
  }
  for (const child of children) {
    if (child !== null && child !== undefined) {
      el.append(child);
    }
  }
  return el;
}

export const SVG_NS = 'http://www.w3.org/2000/svg';

export function s<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | number> = {}
): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) {
    el.setAttribute(key, String(value));
  }
  return el;
}

export function statusBadge(status: string): HTMLSpanElement {
  return h(
    'span',
    { class: `jp-dynpipe-badge jp-dynpipe-status-${status}` },
    status
  );
}

/** `replaceChildren` that skips the optional (null) parts. */
export function fill(
  el: Element,
  ...children: (Node | string | null | undefined)[]
): void {
  el.replaceChildren(
    ...children.filter((c): c is Node | string => c !== null && c !== undefined)
  );
}
