import { describe, expect, it } from 'vitest';
import { firstDuplicateName } from './duplicate-names.js';

describe('firstDuplicateName', () => {
  it('finds a member given twice, naming its path and the second occurrence', () => {
    const text = '{"rules":[{"id":"a","keys":["x"]},{"id":"b","keys":["orders"],"keys":["*"]}]}';
    expect(firstDuplicateName(text)).toEqual({ path: 'rules[1].keys', offset: text.lastIndexOf('"keys"'), at: `line 1, column ${text.lastIndexOf('"keys"') + 1}` });
    expect(firstDuplicateName('{"rules":[],\n"rules":[1]}')).toEqual({ path: 'rules', offset: 13, at: 'line 2, column 1' });
  });

  it('compares names as JSON.parse decodes them', () => {
    expect(firstDuplicateName('{"keys":1,"k\\u0065ys":2}')?.path).toBe('keys');
    expect(firstDuplicateName('{"a\\"b":1,"a\\"b":2}')?.path).toBe('a"b');
  });

  it('is not fooled by strings, escapes, brackets in strings, or equal names in different objects', () => {
    const ok = [
      '{"a":"\\"a\\":","b":{"a":1},"c":[{"a":1},{"a":2}]}',
      '{"a":"}{,[]","b":"\\\\","c":"\\\\\\""}',
      '[{"x":1},{"x":1}]',
      '{"__proto__":1,"constructor":2}',
      '"plain"',
      '{}',
    ];
    for (const text of ok) {
      JSON.parse(text); // valid, as the callers ensure
      expect(firstDuplicateName(text), text).toBeUndefined();
    }
    expect(firstDuplicateName('{"__proto__":1,"__proto__":2}')?.path).toBe('__proto__');
    expect(firstDuplicateName('{"a":[[1,2],{"b":[3]}],"a":0}')?.path).toBe('a');
    expect(firstDuplicateName('{"a":{"b":[{"c":1,"c":2}]}}')?.path).toBe('a.b[0].c');
  });
});
