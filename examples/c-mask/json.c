/* json.c: JSON and UTF-8 helpers of the C `mask` example plugin; see json.h.
 * Build: examples/c-mask/build.sh. */
#include "json.h"

#include <stdlib.h>
#include <string.h>

#define MAX_NESTING 128

/* ---- buffers ---------------------------------------------------------- */

void buf_reserve(buf *b, size_t more) {
  if (b->len + more <= b->cap)
    return;
  size_t cap = b->cap * 2;
  if (cap < b->len + more)
    cap = b->len + more + 64;
  uint8_t *p = realloc(b->p, cap);
  if (!p)
    abort();
  b->p = p;
  b->cap = cap;
}

void buf_put(buf *b, const void *p, size_t n) {
  if (!n)
    return;
  buf_reserve(b, n);
  memcpy(b->p + b->len, p, n);
  b->len += n;
}

void buf_putc(buf *b, uint8_t c) {
  buf_reserve(b, 1);
  b->p[b->len++] = c;
}

void buf_put_utf8(buf *b, uint32_t cp) {
  uint8_t t[4];
  size_t n;
  if (cp < 0x80) {
    t[0] = (uint8_t)cp;
    n = 1;
  } else if (cp < 0x800) {
    t[0] = (uint8_t)(0xC0 | cp >> 6);
    t[1] = (uint8_t)(0x80 | (cp & 0x3F));
    n = 2;
  } else if (cp < 0x10000) {
    t[0] = (uint8_t)(0xE0 | cp >> 12);
    t[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
    t[2] = (uint8_t)(0x80 | (cp & 0x3F));
    n = 3;
  } else {
    t[0] = (uint8_t)(0xF0 | cp >> 18);
    t[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
    t[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
    t[3] = (uint8_t)(0x80 | (cp & 0x3F));
    n = 4;
  }
  buf_put(b, t, n);
}

/* ---- UTF-8 ------------------------------------------------------------ */

size_t utf8_lossy_next(const uint8_t *s, size_t n, uint32_t *cp) {
  uint8_t c = s[0];
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  size_t need;
  uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
  uint32_t v;
  if (c >= 0xC2 && c <= 0xDF) {
    need = 1;
    v = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 2;
    v = c & 0x0F;
    if (c == 0xE0)
      lo = 0xA0;
    else if (c == 0xED)
      hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 3;
    v = c & 0x07;
    if (c == 0xF0)
      lo = 0x90;
    else if (c == 0xF4)
      hi = 0x8F;
  } else {
    *cp = 0xFFFD;
    return 1;
  }
  size_t i = 1;
  for (; i <= need; i++) {
    if (i >= n)
      break;
    uint8_t d = s[i];
    uint8_t l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
    if (d < l || d > h)
      break;
    v = v << 6 | (d & 0x3F);
  }
  if (i <= need) { /* maximal invalid subpart: the bytes that fit so far */
    *cp = 0xFFFD;
    return i;
  }
  *cp = v;
  return need + 1;
}

static int utf8_valid(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (s[i] < 0x80) {
      i++;
      continue;
    }
    uint32_t cp;
    size_t k = utf8_lossy_next(s + i, n - i, &cp);
    if (cp == 0xFFFD && !(k == 3 && s[i] == 0xEF && s[i + 1] == 0xBF && s[i + 2] == 0xBD))
      return 0;
    i += k;
  }
  return 1;
}

/* ---- JSON strings ----------------------------------------------------- */

static int hex4(const uint8_t *s, size_t n, size_t i, uint32_t *out) {
  if (i + 4 > n)
    return 0;
  uint32_t v = 0;
  for (size_t k = 0; k < 4; k++) {
    uint8_t c = s[i + k];
    v <<= 4;
    if (c >= '0' && c <= '9')
      v |= (uint32_t)(c - '0');
    else if (c >= 'a' && c <= 'f')
      v |= (uint32_t)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F')
      v |= (uint32_t)(c - 'A' + 10);
    else
      return 0;
  }
  *out = v;
  return 1;
}

int json_decode_string(const uint8_t *s, size_t n, buf *out) {
  size_t mark = out->len;
  if (n < 2 || s[0] != '"' || s[n - 1] != '"')
    return 0;
  size_t i = 1, end = n - 1;
  while (i < end) {
    size_t run = i;
    while (i < end && s[i] != '\\' && s[i] != '"' && s[i] >= 0x20)
      i++;
    if (!utf8_valid(s + run, i - run))
      goto fail;
    buf_put(out, s + run, i - run);
    if (i == end)
      break;
    if (s[i] != '\\')
      goto fail; /* control character or stray quote */
    if (i + 1 >= end)
      goto fail;
    uint8_t e = s[i + 1];
    i += 2;
    switch (e) {
    case '"': buf_putc(out, '"'); break;
    case '\\': buf_putc(out, '\\'); break;
    case '/': buf_putc(out, '/'); break;
    case 'b': buf_putc(out, 0x08); break;
    case 'f': buf_putc(out, 0x0C); break;
    case 'n': buf_putc(out, '\n'); break;
    case 'r': buf_putc(out, '\r'); break;
    case 't': buf_putc(out, '\t'); break;
    case 'u': {
      uint32_t u;
      if (!hex4(s, end, i, &u))
        goto fail;
      i += 4;
      if (u >= 0xDC00 && u <= 0xDFFF)
        goto fail; /* lone trailing surrogate */
      if (u >= 0xD800 && u <= 0xDBFF) {
        uint32_t u2;
        if (i + 1 >= end || s[i] != '\\' || s[i + 1] != 'u' || !hex4(s, end, i + 2, &u2))
          goto fail;
        if (u2 < 0xDC00 || u2 > 0xDFFF)
          goto fail;
        i += 6;
        u = 0x10000 + ((u - 0xD800) << 10 | (u2 - 0xDC00));
      }
      buf_put_utf8(out, u);
      break;
    }
    default:
      goto fail;
    }
  }
  return 1;
fail:
  out->len = mark;
  return 0;
}

void json_encode_string(const uint8_t *s, size_t n, buf *out) {
  static const char hex[] = "0123456789abcdef";
  buf_reserve(out, n + 2);
  buf_putc(out, '"');
  size_t run = 0;
  for (size_t i = 0; i < n; i++) {
    uint8_t c = s[i];
    if (c >= 0x20 && c != '"' && c != '\\')
      continue;
    buf_put(out, s + run, i - run);
    run = i + 1;
    switch (c) {
    case '"': buf_put(out, "\\\"", 2); break;
    case '\\': buf_put(out, "\\\\", 2); break;
    case 0x08: buf_put(out, "\\b", 2); break;
    case 0x0C: buf_put(out, "\\f", 2); break;
    case '\n': buf_put(out, "\\n", 2); break;
    case '\r': buf_put(out, "\\r", 2); break;
    case '\t': buf_put(out, "\\t", 2); break;
    default: {
      char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
      buf_put(out, u, 6);
    }
    }
  }
  buf_put(out, s + run, n - run);
  buf_putc(out, '"');
}

/* ---- the body scanner (port of plugins/mask/src/json.rs) --------------- */

typedef struct {
  const uint8_t *b;
  size_t n, i;
  const json_path *paths;
  size_t npaths;
  json_edits *edits;
  buf key; /* scratch for keys with escapes */
} scanner;

static int peek(const scanner *s) { return s->i < s->n ? s->b[s->i] : -1; }

/* The loops below keep the position in a local: stores through s->i could
 * alias the uint8_t reads, which would force a reload and store per byte. */
static void ws(scanner *s) {
  const uint8_t *b = s->b;
  size_t i = s->i, n = s->n;
  while (i < n && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r'))
    i++;
  s->i = i;
}

static int expect(scanner *s, uint8_t c) {
  if (peek(s) != c)
    return 0;
  s->i++;
  return 1;
}

static void push_edit(scanner *s, size_t start, size_t end, int is_string) {
  json_edits *e = s->edits;
  if (e->n == e->cap) {
    e->cap = e->cap * 2 + 8;
    e->e = realloc(e->e, e->cap * sizeof *e->e);
    if (!e->e)
      abort();
  }
  json_edit ed = {start, end, is_string};
  e->e[e->n++] = ed;
}

/* Steps over the escape at b[i] (its backslash included), refusing what JSON
 * refuses, as the Rust scanner does: an unknown escape (`\q`), a `\u` without
 * four hex digits, a lone or reversed surrogate. Returns the index after it,
 * or 0 (never a valid answer: an escape follows an opening quote). */
static size_t skip_escape(const uint8_t *b, size_t n, size_t i) {
  if (++i >= n)
    return 0;
  switch (b[i]) {
  case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
    return i + 1;
  case 'u': {
    uint32_t u, u2;
    if (!hex4(b, n, i + 1, &u))
      return 0;
    i += 5;
    if (u >= 0xDC00 && u <= 0xDFFF)
      return 0;
    if (u < 0xD800 || u > 0xDBFF)
      return i;
    if (i + 1 >= n || b[i] != '\\' || b[i + 1] != 'u' || !hex4(b, n, i + 2, &u2))
      return 0;
    return u2 >= 0xDC00 && u2 <= 0xDFFF ? i + 6 : 0;
  }
  default:
    return 0;
  }
}

/* A string; sets its span including the quotes. Its escapes are checked, so
 * a bad one makes the body not JSON, as in the Rust scanner. Its UTF-8 is not
 * checked here (nor there): a key is checked where it is compared (invalid:
 * not JSON), a value where it is masked (invalid: masked as ""). */
static int scan_string(scanner *s, size_t *start, size_t *end) {
  const uint8_t *b = s->b;
  size_t i = s->i, n = s->n;
  *start = i;
  if (i >= n || b[i] != '"')
    return 0;
  i++;
  for (;;) {
    while (i < n && b[i] != '"' && b[i] != '\\' && b[i] > 0x1f)
      i++;
    if (i >= n || b[i] <= 0x1f)
      return 0;
    if (b[i] == '"') {
      s->i = i + 1;
      *end = i + 1;
      return 1;
    }
    if ((i = skip_escape(b, n, i)) == 0)
      return 0;
  }
}

static size_t digits(scanner *s) {
  const uint8_t *b = s->b;
  size_t start = s->i, i = start, n = s->n;
  while (i < n && b[i] >= '0' && b[i] <= '9')
    i++;
  s->i = i;
  return i - start;
}

static int scan_number(scanner *s, size_t *start, size_t *end) {
  *start = s->i;
  if (peek(s) == '-')
    s->i++;
  int c = peek(s);
  if (c == '0')
    s->i++;
  else if (c >= '1' && c <= '9')
    digits(s);
  else
    return 0;
  if (peek(s) == '.') {
    s->i++;
    if (digits(s) == 0)
      return 0;
  }
  c = peek(s);
  if (c == 'e' || c == 'E') {
    s->i++;
    c = peek(s);
    if (c == '+' || c == '-')
      s->i++;
    if (digits(s) == 0)
      return 0;
  }
  *end = s->i;
  return 1;
}

static int literal(scanner *s, const char *word) {
  size_t n = strlen(word);
  if (s->n - s->i < n || memcmp(s->b + s->i, word, n) != 0)
    return 0;
  s->i += n;
  return 1;
}

/* Which paths still match after key span [ks,ke) at `depth`, and whether one
 * ends there. Returns 0 when the key is not valid (the body is then not
 * treated as JSON, as in the Rust scanner). */
static int descend(scanner *s, uint64_t live, size_t depth, size_t ks, size_t ke, uint64_t *next,
                   int *masked) {
  const uint8_t *raw = s->b + ks + 1;
  size_t rn = ke - ks - 2;
  if (memchr(raw, '\\', rn)) {
    s->key.len = 0;
    if (!json_decode_string(s->b + ks, ke - ks, &s->key))
      return 0;
    raw = s->key.p;
    rn = s->key.len;
  } else if (!utf8_valid(raw, rn)) {
    return 0;
  }
  *next = 0;
  *masked = 0;
  for (size_t bit = 0; bit < s->npaths; bit++) {
    const json_path *p = &s->paths[bit];
    if (!(live >> bit & 1) || depth >= p->n || p->seg_len[depth] != rn ||
        (rn && memcmp(p->seg[depth], raw, rn) != 0))
      continue;
    if (p->n == depth + 1)
      *masked = 1;
    else
      *next |= (uint64_t)1 << bit;
  }
  return 1;
}

static int value(scanner *s, uint64_t live, size_t depth, int masked, size_t nesting);

static int object(scanner *s, uint64_t live, size_t depth, int masked, size_t nesting) {
  if (!expect(s, '{'))
    return 0;
  ws(s);
  if (peek(s) == '}') {
    s->i++;
    return 1;
  }
  for (;;) {
    size_t ks, ke;
    ws(s);
    if (!scan_string(s, &ks, &ke))
      return 0;
    ws(s);
    if (!expect(s, ':'))
      return 0;
    ws(s);
    uint64_t child_live = 0;
    int child_masked = masked;
    if (!masked && live != 0 && !descend(s, live, depth, ks, ke, &child_live, &child_masked))
      return 0;
    if (!value(s, child_live, depth + 1, child_masked, nesting))
      return 0;
    ws(s);
    int c = peek(s);
    if (c == ',')
      s->i++;
    else if (c == '}') {
      s->i++;
      return 1;
    } else
      return 0;
  }
}

static int array(scanner *s, uint64_t live, size_t depth, int masked, size_t nesting) {
  if (!expect(s, '['))
    return 0;
  ws(s);
  if (peek(s) == ']') {
    s->i++;
    return 1;
  }
  for (;;) {
    ws(s);
    if (!value(s, live, depth, masked, nesting))
      return 0;
    ws(s);
    int c = peek(s);
    if (c == ',')
      s->i++;
    else if (c == ']') {
      s->i++;
      return 1;
    } else
      return 0;
  }
}

static int value(scanner *s, uint64_t live, size_t depth, int masked, size_t nesting) {
  if (nesting > MAX_NESTING)
    return 0;
  size_t a, b;
  switch (peek(s)) {
  case '{':
    return object(s, live, depth, masked, nesting + 1);
  case '[':
    return array(s, live, depth, masked, nesting + 1);
  case '"':
    if (!scan_string(s, &a, &b))
      return 0;
    if (masked)
      push_edit(s, a, b, 1);
    return 1;
  case '-': case '0': case '1': case '2': case '3': case '4':
  case '5': case '6': case '7': case '8': case '9':
    if (!scan_number(s, &a, &b))
      return 0;
    if (masked)
      push_edit(s, a, b, 0);
    return 1;
  case 't':
    return literal(s, "true");
  case 'f':
    return literal(s, "false");
  case 'n':
    return literal(s, "null");
  default:
    return 0;
  }
}

int json_find_fields(const uint8_t *body, size_t n, const json_path *paths, size_t npaths,
                     json_edits *out) {
  static buf key_scratch;
  scanner s = {body, n, 0, paths, npaths, out, key_scratch};
  uint64_t live = npaths >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << npaths) - 1);
  out->n = 0;
  /* JSON text is UTF-8; the scanner checks only the keys it compares. */
  if (!utf8_valid(body, n))
    return 0;
  ws(&s);
  int ok = value(&s, live, 0, 0, 0);
  key_scratch = s.key;
  if (!ok)
    return 0;
  ws(&s);
  return s.i == n;
}

/* ---- a small JSON reader for the configuration ------------------------- */

typedef struct {
  const uint8_t *b;
  size_t n, i;
} reader;

static void rws(reader *r) {
  while (r->i < r->n && (r->b[r->i] == ' ' || r->b[r->i] == '\t' || r->b[r->i] == '\n' ||
                         r->b[r->i] == '\r'))
    r->i++;
}

static int rstring(reader *r, char **out, size_t *len) {
  scanner s = {r->b, r->n, r->i, NULL, 0, NULL, {0}};
  size_t a, b;
  if (!scan_string(&s, &a, &b))
    return 0;
  buf text = {0};
  if (!json_decode_string(r->b + a, b - a, &text)) {
    free(text.p);
    return 0;
  }
  buf_putc(&text, 0);
  *out = (char *)text.p;
  *len = text.len - 1;
  r->i = b;
  return 1;
}

static int rvalue(reader *r, jv *v, size_t nesting) {
  memset(v, 0, sizeof *v);
  if (nesting > MAX_NESTING || r->i >= r->n)
    return 0;
  uint8_t c = r->b[r->i];
  if (c == '"') {
    v->t = JV_STRING;
    return rstring(r, &v->s, &v->slen);
  }
  if (c == '{' || c == '[') {
    int obj = c == '{';
    uint8_t close = obj ? '}' : ']';
    v->t = obj ? JV_OBJECT : JV_ARRAY;
    r->i++;
    rws(r);
    if (r->i < r->n && r->b[r->i] == close) {
      r->i++;
      return 1;
    }
    size_t cap = 0;
    for (;;) {
      if (v->n == cap) {
        cap = cap * 2 + 4;
        v->items = realloc(v->items, cap * sizeof *v->items);
        if (obj)
          v->keys = realloc(v->keys, cap * sizeof *v->keys);
        if (!v->items || (obj && !v->keys))
          abort();
      }
      rws(r);
      if (obj) {
        size_t klen;
        v->keys[v->n] = NULL;
        if (!rstring(r, &v->keys[v->n], &klen))
          return 0;
        rws(r);
        if (r->i >= r->n || r->b[r->i] != ':') {
          memset(&v->items[v->n], 0, sizeof v->items[v->n]);
          v->n++; /* keeps the key owned for jv_free */
          return 0;
        }
        r->i++;
        rws(r);
      }
      int ok = rvalue(r, &v->items[v->n], nesting + 1);
      v->n++;
      if (!ok)
        return 0;
      rws(r);
      if (r->i < r->n && r->b[r->i] == ',') {
        r->i++;
      } else if (r->i < r->n && r->b[r->i] == close) {
        r->i++;
        return 1;
      } else {
        return 0;
      }
    }
  }
  if (c == '-' || (c >= '0' && c <= '9')) {
    scanner s = {r->b, r->n, r->i, NULL, 0, NULL, {0}};
    size_t a, b;
    if (!scan_number(&s, &a, &b))
      return 0;
    v->t = JV_NUMBER;
    v->s = malloc(b - a + 1);
    if (!v->s)
      abort();
    memcpy(v->s, r->b + a, b - a);
    v->s[b - a] = 0;
    v->slen = b - a;
    r->i = b;
    return 1;
  }
  scanner s = {r->b, r->n, r->i, NULL, 0, NULL, {0}};
  if (literal(&s, "true")) {
    v->t = JV_BOOL;
    v->boolean = 1;
  } else if (literal(&s, "false")) {
    v->t = JV_BOOL;
  } else if (literal(&s, "null")) {
    v->t = JV_NULL;
  } else {
    return 0;
  }
  r->i = s.i;
  return 1;
}

int jv_parse(const uint8_t *s, size_t n, jv *out) {
  reader r = {s, n, 0};
  rws(&r);
  if (!rvalue(&r, out, 0)) {
    jv_free(out);
    return 0;
  }
  rws(&r);
  if (r.i != n) {
    jv_free(out);
    return 0;
  }
  return 1;
}

void jv_free(jv *v) {
  for (size_t i = 0; i < v->n; i++) {
    jv_free(&v->items[i]);
    if (v->keys)
      free(v->keys[i]);
  }
  free(v->items);
  free(v->keys);
  free(v->s);
  memset(v, 0, sizeof *v);
}

const char *jv_type_name(const jv *v) {
  switch (v->t) {
  case JV_NULL: return "null";
  case JV_BOOL: return "a boolean";
  case JV_NUMBER: return "a number";
  case JV_STRING: return "a string";
  case JV_ARRAY: return "a list";
  default: return "a table";
  }
}
