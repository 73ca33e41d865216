/*
 * hello.c: a quartet user program from another toolchain (chapter 23).
 *
 * No C library: its own _start and raw `svc #0` system calls in the Linux arm64 ABI, so the
 * same static executable runs on quartet and under qemu-aarch64. Built with
 *   aarch64-linux-gnu-gcc -static -nostdlib -ffreestanding -fno-pie -no-pie -O2 \
 *       -Wl,-Ttext-segment=0x400000 -Wl,-z,max-page-size=0x10000 -o hello-c hello.c
 */

typedef unsigned long u64;

static long syscall3(long n, long a0, long a1, long a2)
{
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a0;
    register long x1 __asm__("x1") = a1;
    register long x2 __asm__("x2") = a2;
    __asm__ volatile("svc #0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2) : "memory");
    return x0;
}

enum { SYS_WRITE = 64, SYS_EXIT_GROUP = 94, SYS_GETPID = 172 };

static u64 length(const char *s)
{
    u64 n = 0;
    while (s[n])
        n++;
    return n;
}

static void put(const char *s)
{
    syscall3(SYS_WRITE, 1, (long)s, (long)length(s));
}

/* Decimal digits of a non-negative number into buf (at least 21 bytes). */
static const char *decimal(long v, char *buf)
{
    char *p = buf + 20;
    *p = 0;
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return p;
}

/* SP points at argc, then argc argv pointers, as Linux and quartet lay out the initial stack. */
__attribute__((used)) static void start_c(long *sp)
{
    long argc = sp[0];
    char **argv = (char **)(sp + 1);
    char digits[21];

    put("hello from C, pid ");
    put(decimal(syscall3(SYS_GETPID, 0, 0, 0), digits));
    put(", argc ");
    put(decimal(argc, digits));
    put("\n");
    for (long i = 1; i < argc; i++) {
        put("  ");
        put(argv[i]);
        put("\n");
    }
    syscall3(SYS_EXIT_GROUP, 0, 0, 0);
    for (;;)
        ;
}

__asm__(".text\n"
        ".global _start\n"
        "_start:\n"
        "    mov x29, #0\n"
        "    mov x30, #0\n"
        "    mov x0, sp\n"
        "    bl start_c\n"
        "    udf #0\n");
