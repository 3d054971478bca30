#include "metrics/utext.h"

size_t utext_next(const char *s, size_t len, uint32_t *cp)
{
    const unsigned char *u = (const unsigned char *)s;
    unsigned c = u[0];
    size_t need = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
    if (need > len)
        need = 1;
    if (need == 1) {
        *cp = c;
        return 1;
    }
    uint32_t v = c & (0x7fu >> need);
    for (size_t i = 1; i < need; i++) {
        if ((u[i] & 0xc0) != 0x80) {
            *cp = c;
            return 1;
        }
        v = (v << 6) | (u[i] & 0x3f);
    }
    *cp = v;
    return need;
}

int utext_isspace(uint32_t c)
{
    if (c <= 0x7f)
        return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20);
    return c == 0x85 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 ||
           c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

size_t utext_length(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; n++) {
        uint32_t cp;
        i += utext_next(s + i, len - i, &cp);
    }
    return n;
}

size_t utext_count_words(const char *s, size_t len)
{
    size_t words = 0;
    int in_word = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        i += utext_next(s + i, len - i, &cp);
        int sp = utext_isspace(cp);
        if (!sp && !in_word)
            words++;
        in_word = !sp;
    }
    return words;
}
