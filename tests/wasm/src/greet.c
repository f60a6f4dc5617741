/* greet: a WASI 0.2 component (world `greet` in ../wit/world.wit), written against the canonical ABI
 * by hand so it needs no bindings generator: print a greeting, then every environment variable. */
#include <stddef.h>
#include <stdint.h>

#define IMPORT(module, name) __attribute__((import_module(module), import_name(name)))
#define EXPORT(name) __attribute__((export_name(name)))

IMPORT("wasi:cli/environment@0.2.0", "get-environment") void get_environment(uint32_t *ret);
IMPORT("wasi:cli/stdout@0.2.0", "get-stdout") int32_t get_stdout(void);
IMPORT("wasi:io/streams@0.2.0", "[method]output-stream.blocking-write-and-flush")
void blocking_write_and_flush(int32_t self, const uint8_t *ptr, size_t len, uint8_t *ret);
IMPORT("wasi:io/streams@0.2.0", "[resource-drop]output-stream") void drop_output_stream(int32_t self);

static uint8_t arena[32768];
static size_t used;

/* The canonical ABI's allocator: a bump allocator is enough for one run. */
EXPORT("cabi_realloc") void *cabi_realloc(void *old, size_t old_size, size_t align, size_t new_size) {
    used = (used + align - 1) & ~(align - 1);
    if (used + new_size > sizeof arena)
        __builtin_trap();
    uint8_t *p = arena + used;
    used += new_size;
    for (size_t i = 0; i < old_size && i < new_size; i++)
        p[i] = ((uint8_t *)old)[i];
    return p;
}

static int32_t out;

static int write_all(const uint8_t *p, size_t n) {
    uint8_t ret[12] __attribute__((aligned(4)));
    blocking_write_and_flush(out, p, n, ret);
    return ret[0] == 0;
}

static int write_str(const char *s) {
    size_t n = 0;
    while (s[n])
        n++;
    return write_all((const uint8_t *)s, n);
}

EXPORT("wasi:cli/run@0.2.0#run") int32_t run(void) {
    uint32_t list[2];
    out = get_stdout();
    int ok = write_str("hello from a component\n");
    get_environment(list);
    const uint32_t *pairs = (const uint32_t *)(uintptr_t)list[0];
    for (uint32_t i = 0; ok && i < list[1]; i++) {
        const uint32_t *kv = pairs + 4 * i; /* key ptr, key len, value ptr, value len */
        ok = write_all((const uint8_t *)(uintptr_t)kv[0], kv[1]) && write_str("=") &&
             write_all((const uint8_t *)(uintptr_t)kv[2], kv[3]) && write_str("\n");
    }
    drop_output_stream(out);
    return ok ? 0 : 1;
}
