/* json.h: JSON and UTF-8 helpers of the C `mask` example plugin (see mask.c).
 * Build: examples/c-mask/build.sh. Mirrors plugins/mask/src/json.rs and the
 * serde_json behaviour the Rust mask relies on, so outputs are byte-identical. */
#ifndef MASK_JSON_H
#define MASK_JSON_H

#include <stddef.h>
#include <stdint.h>

/* A growable byte buffer. */
typedef struct {
  uint8_t *p;
  size_t len, cap;
} buf;

void buf_reserve(buf *b, size_t more);
void buf_put(buf *b, const void *p, size_t n);
void buf_putc(buf *b, uint8_t c);
void buf_put_utf8(buf *b, uint32_t cp);

/* Decodes the next character of `s` the way Rust's String::from_utf8_lossy
 * does: a valid sequence gives its code point; a maximal invalid subpart gives
 * U+FFFD. Returns the bytes consumed (>= 1; n must be > 0). */
size_t utf8_lossy_next(const uint8_t *s, size_t n, uint32_t *cp);

/* Decodes a JSON string literal (span including quotes) strictly, like
 * serde_json::from_slice::<String> (valid escapes, paired surrogates, valid
 * UTF-8). Appends the text to `out`; returns 0 (out unchanged) on error. */
int json_decode_string(const uint8_t *s, size_t n, buf *out);

/* Appends `s` as a JSON string literal, escaped exactly as serde_json does. */
void json_encode_string(const uint8_t *s, size_t n, buf *out);

/* One key path of `fields`: segments point into caller-owned memory. */
typedef struct {
  const char **seg;
  size_t *seg_len;
  size_t n;
} json_path;

/* A value to mask: byte range in the body; is_string says whether it is a
 * string (range includes quotes) or a number (its digits). */
typedef struct {
  size_t start, end;
  int is_string;
} json_edit;

typedef struct {
  json_edit *e;
  size_t n, cap;
} json_edits;

/* Finds the strings and numbers at or below any of `paths` (arrays looked
 * through) in document order. Returns 0 when `body` is not one JSON document
 * (or nests deeper than 128), 1 otherwise. At most 64 paths. */
int json_find_fields(const uint8_t *body, size_t n, const json_path *paths, size_t npaths,
                     json_edits *out);

/* A parsed JSON value (for the configuration only). */
typedef enum { JV_NULL, JV_BOOL, JV_NUMBER, JV_STRING, JV_ARRAY, JV_OBJECT } jv_type;
typedef struct jv {
  jv_type t;
  int boolean;
  char *s;   /* JV_STRING: decoded, NUL-terminated; JV_NUMBER: the literal */
  size_t slen;
  struct jv *items; /* JV_ARRAY items, JV_OBJECT values */
  char **keys;      /* JV_OBJECT keys, NUL-terminated */
  size_t n;
} jv;

/* Parses one JSON document; returns 0 on a syntax error. */
int jv_parse(const uint8_t *s, size_t n, jv *out);
void jv_free(jv *v);
const char *jv_type_name(const jv *v);

#endif
