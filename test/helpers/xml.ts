/**
 * A strict well-formedness check for the SVG the bench writes (no dependency): one root element,
 * every tag closed in order, attributes quoted and unique, entities among the five XML ones.
 * Returns the element names in document order, or throws with the position of the first problem.
 */
export function checkWellFormedXml(xml: string): string[] {
  const names: string[] = [];
  const stack: string[] = [];
  let i = 0, roots = 0;
  const fail = (msg: string): never => {
    throw new Error(`XML at ${i}: ${msg} near ${JSON.stringify(xml.slice(Math.max(0, i - 20), i + 20))}`);
  };
  const checkText = (text: string) => {
    for (const m of text.matchAll(/&([^;\s]*);?/g)) if (!/^&(amp|lt|gt|quot|apos);$/.test(m[0])) fail(`bad entity ${m[0]}`);
    if (text.includes('<')) fail('stray <');
  };
  while (i < xml.length) {
    const lt = xml.indexOf('<', i);
    if (lt === -1) {
      if (xml.slice(i).trim() !== '') fail('text after the root element');
      break;
    }
    const text = xml.slice(i, lt);
    if (stack.length === 0 && text.trim() !== '') fail('text outside the root element');
    checkText(text);
    i = lt;
    const gt = xml.indexOf('>', i);
    if (gt === -1) fail('unterminated tag');
    const tag = xml.slice(i + 1, gt);
    i = gt + 1;
    if (tag.startsWith('/')) {
      const name = tag.slice(1).trim();
      if (stack.pop() !== name) fail(`closing </${name}> does not match`);
      continue;
    }
    const selfClosing = tag.endsWith('/');
    const body = selfClosing ? tag.slice(0, -1) : tag;
    const m = /^([A-Za-z][\w:.-]*)((?:\s+[A-Za-z_:][\w:.-]*="[^"<]*")*)\s*$/.exec(body);
    if (!m) fail(`malformed tag <${tag}>`);
    const attrs = [...m![2]!.matchAll(/([A-Za-z_:][\w:.-]*)="([^"]*)"/g)];
    const seen = new Set<string>();
    for (const a of attrs) {
      if (seen.has(a[1]!)) fail(`duplicate attribute ${a[1]}`);
      seen.add(a[1]!);
      checkText(a[2]!);
    }
    if (stack.length === 0) roots++;
    if (roots > 1) fail('more than one root element');
    names.push(m![1]!);
    if (!selfClosing) stack.push(m![1]!);
  }
  if (stack.length) throw new Error(`XML: unclosed <${stack.at(-1)}>`);
  return names;
}
