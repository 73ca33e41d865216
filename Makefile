# quartet: the two commands are `make run` and `make test`. The Makefile stays thin: the logic
# lives in tools/. Every target that needs a tool runs tools/setup first, which installs what is
# missing (or prints the exact commands when it cannot).
#
# QEMU knobs for run/run-rpi4/gdb: SMP=4 MEM=512M CPU=cortex-a72 GIC=2|3 EL2=0|1 BOOTARGS="..."
# make run INITRD=file.cpio: boot with a newc cpio archive as the initramfs.

SMP      ?= 4
MEM      ?= 512M
CPU      ?= cortex-a72
GIC      ?= 2
EL2      ?= 0
BOOTARGS ?=
export SMP MEM CPU GIC EL2 BOOTARGS

HOST      := $(shell rustc -vV 2>/dev/null | sed -n 's/host: //p')
OBJCOPY    = $(shell rustc --print sysroot)/lib/rustlib/$(HOST)/bin/llvm-objcopy
VIRT_ELF  := target/aarch64-unknown-none/release/quartet
RPI4_ELF  := target/rpi4/aarch64-unknown-none/release/quartet
SOURCES   := $(shell find src -name '*.rs') Cargo.toml build.rs linker.ld \
             $(shell find user -name '*.rs' -o -name '*.c' -o -name '*.ld' -o -name '*.toml')
# The user programs (chapter 23): build.rs builds them the same way for every kernel build.
USER_CC     := aarch64-linux-gnu-gcc
USER_CFLAGS := -static -nostdlib -ffreestanding -fno-pie -no-pie -O2 -Wall -Wextra -Werror \
               -Wl,-Ttext-segment=0x400000 -Wl,-z,max-page-size=0x10000 -Wl,-z,noexecstack \
               -Wl,--build-id=none

.PHONY: user setup-rpi4 all run run-rpi4 chainloader push push-tool test samples samples-check unit loom lint qemu-tests chainload-test image rpi4 sdcard sdcard-image setup-sdcard flash gdb doc book setup clean bench bench-host bench-host-check lab labs lab-check lab-selftest FORCE

all: image rpi4

setup:
	@tools/setup

setup-rpi4:
	@tools/setup --rpi-dtb

# The Pi 4 firmware, the trees and the image tools, for make sdcard-image and its tests.
setup-sdcard:
	@tools/setup --rpi-firmware

## make run: build and boot QEMU virt with $(SMP) CPUs, serial console on this terminal.
run: setup image
	tools/qemu-run --board virt --image build/virt/kernel8.img $(if $(INITRD),--initrd $(INITRD))

## make run-rpi4: the Pi 4 build on QEMU raspi4b, with the real Pi 4 device tree.
run-rpi4: setup-rpi4 rpi4
	tools/qemu-run --board rpi4 --image build/rpi4/kernel8.img

## make test: host unit tests, loom models, lint, the labs' self-test, both kernels, the QEMU boot
## tests, then the book's console samples replayed.
test: setup-sdcard unit loom lint bench-host-check lab-selftest image rpi4 chainloader push-tool qemu-tests samples-check

## make samples: rerun the console samples marked in README.md and docs/ (a `<!-- sample: ... -->`
## line before the block) and rewrite each from the real output. make samples-check (part of make
## test): the same runs, compared with the book by shape (numbers and addresses masked), after
## tools/samples shows it can tell an edited block from a real one.
samples: setup-rpi4 image rpi4
	tools/samples refresh
samples-check: setup-rpi4 image rpi4
	tools/samples selftest
	tools/samples check

## make user: the user programs alone, into target/user (the kernel's build.rs does the same and
## embeds them). Each is a static Linux arm64 executable: `qemu-aarch64 target/user/.../hello`.
user:
	cargo build --release --manifest-path user/Cargo.toml --target aarch64-unknown-none --target-dir target/user
	@mkdir -p target/user/c
	$(USER_CC) $(USER_CFLAGS) -o target/user/c/hello-c user/c/hello.c

## make unit: the host unit tests, then the doc tests (`--lib` alone skips doc tests, and the
## compile_fail ones are what proves a spin-lock guard cannot leave its CPU). The ELF checks'
## tests also read the real user programs, so those are built first.
unit: user
	cargo test --target $(HOST) --lib
	cargo test --target $(HOST) --doc

## make loom: model-check the subtle lock algorithms (ticket, MCS, seqlock) with loom.
## Preemption bound 3 keeps the whole run to a few minutes on two cores.
loom:
	LOOM_MAX_PREEMPTIONS=3 RUSTFLAGS="--cfg loom" cargo test --target $(HOST) --lib --release --target-dir target/loom loom_

lint:
	cargo fmt --all -- --check
	cargo fmt --manifest-path user/Cargo.toml --all -- --check
	cargo clippy --release --manifest-path user/Cargo.toml --target aarch64-unknown-none --target-dir target/user -- -D warnings
	cargo clippy --release -- -D warnings
	cargo clippy --target $(HOST) --lib --tests -- -D warnings
	cargo fmt --manifest-path tools/bench-host/Cargo.toml --all -- --check
	cargo clippy --release --features board-rpi4 --bin chainloader --target-dir target/rpi4 -- -D warnings
	cargo fmt --manifest-path tools/push/Cargo.toml --all -- --check
	cargo clippy --release --manifest-path tools/push/Cargo.toml --target $(HOST) --target-dir target/push -- -D warnings

qemu-tests:
	cargo test --target $(HOST) --test boot --test sdcard --test docs --test user_linux --test chainload -- --test-threads=2

## make chainload-test: the chainloader end to end on QEMU raspi4b (tests/chainload.rs, about a
## minute; make test runs it too), alone.
chainload-test: rpi4 chainloader push-tool
	cargo test --target $(HOST) --test chainload

## make labs: the graded labs. make lab NAME=ticket: a work tree, build/labs/ticket/, in which one
## mechanism's functions are todo!()s (FORCE=1 starts it over). make lab-check NAME=ticket: grade
## it with the mechanism's own tests (LOOM=0 skips the loom models, FULL=1 adds the in-kernel
## tests on QEMU). make lab-selftest (part of make test): every real file passes its grader and
## every skeleton fails it. The logic is tools/lab.
labs:
	@tools/lab list
lab:
	@tools/lab $(if $(NAME),make $(NAME) $(if $(filter 1,$(FORCE)),--force),list)
lab-check:
	@test -n "$(NAME)" || { echo "usage: make lab-check NAME=lab (make labs lists them)"; exit 2; }
	@tools/lab check $(NAME) $(if $(filter 1,$(FULL)),--full) $(if $(filter 0,$(LOOM)),--no-loom)
lab-selftest:
	@tools/lab selftest

## make bench: the in-kernel benchmarks on QEMU virt (CPU=max, so LSE is measured too), collected
## into build/bench/*.csv and *.svg with the targets checked, then make bench-host. BENCH_ARGS="--quick"
## for a format check; BENCH_ARGS="--suite NAME" runs that QEMU suite alone. SMP=16 measures out to
## 16 CPUs (on a GICv3: a GICv2 reaches 8).
## The benchmark kernel is built without the lock validator (`--no-default-features`), so
## the numbers are the locks' own. LOCKSTAT=1 builds lock statistics in (chapter 9), for the
## `bench suite=lockstat` lines; they cost every lock a little, so they are off by default.
BENCH_ELF := target/bench/aarch64-unknown-none/release/quartet
comma := ,
BENCH_FEATURES := $(if $(filter 1,$(LOCKSTAT)),--features lockstat)
bench: setup build/bench/kernel8.img
	CPU=$(if $(filter command line environment,$(origin CPU)),$(CPU),max) tools/bench --image build/bench/kernel8.img $(BENCH_ARGS)
	$(if $(findstring --suite,$(BENCH_ARGS)),,@$(MAKE) --no-print-directory bench-host)

## make bench-host: the same algorithms on the host's real cores (chapter 9, "On real cores"):
## tools/bench-host, a host program built on the kernel crate, against spin, parking_lot, std,
## crossbeam-epoch and arc-swap; into build/bench/host/ with the targets checked.
## BENCH_ARGS="--quick" for a format check. On an AArch64 Linux host it runs the kernel's own
## LDXR/STXR or LSE atomics.
BENCH_HOST := target/bench-host/$(HOST)/release/bench-host
bench-host:
	cargo build --release --manifest-path tools/bench-host/Cargo.toml --target $(HOST) --target-dir target/bench-host
	tools/bench --host --binary $(BENCH_HOST) $(filter --quick,$(BENCH_ARGS))

## make bench-host-check (part of make test): the host benchmark compiles, cleanly, for this
## host and for an AArch64 Linux host, where it uses src/arch/aarch64's atomics.
bench-host-check:
	cargo clippy --manifest-path tools/bench-host/Cargo.toml --target aarch64-unknown-linux-gnu --target-dir target/bench-host -- -D warnings
# The features the bench image was built with: rewritten only when LOCKSTAT changes, so that
# changing it rebuilds the image and keeping it does not.
build/bench/features: FORCE
	@mkdir -p $(@D)
	@echo '$(BENCH_FEATURES)' | cmp -s - $@ || echo '$(BENCH_FEATURES)' > $@
build/bench/kernel8.img: $(SOURCES) build/bench/features
	cargo build --release --no-default-features $(BENCH_FEATURES) --target-dir target/bench
	@mkdir -p $(@D)
	$(OBJCOPY) -O binary $(BENCH_ELF) $@
	@echo "image: $@ ($$(stat -c %s $@) bytes, no lock validator$(if $(BENCH_FEATURES),$(comma) with lock statistics))"

## make image: build/virt/kernel8.img, an arm64 Image (the loader passes the DTB in x0).
image: build/virt/kernel8.img
build/virt/kernel8.img: $(SOURCES)
	cargo build --release
	@mkdir -p $(@D)
	$(OBJCOPY) -O binary $(VIRT_ELF) $@
	@cp $(VIRT_ELF) build/virt/quartet.elf
	@echo "image: $@ ($$(stat -c %s $@) bytes)"

## make rpi4: build/rpi4/kernel8.img and config.txt, ready for a Pi 4 SD card's boot partition.
rpi4: build/rpi4/kernel8.img build/rpi4/config.txt
build/rpi4/kernel8.img: $(SOURCES)
	cargo build --release --features board-rpi4 --bin quartet --target-dir target/rpi4
	@mkdir -p $(@D)
	$(OBJCOPY) -O binary $(RPI4_ELF) $@
	@cp $(RPI4_ELF) build/rpi4/quartet.elf
	@echo "image: $@ ($$(stat -c %s $@) bytes)"
build/rpi4/config.txt: tools/rpi4-config.txt
	@mkdir -p $(@D)
	cp $< $@

## make chainloader: build/rpi4/chainloader/kernel8.img, the Pi 4's serial chainloader (chapter
## 28). Put it on the card as kernel8.img once; from then on `make push TTY=/dev/ttyUSB0` sends
## build/rpi4/kernel8.img over the serial line at each reset of the board, then is a terminal to
## it (Ctrl-] leaves). TTY may also be /dev/pts/N, tcp:HOST:PORT or unix:PATH for QEMU;
## PUSH_IMAGE=file sends another file.
CHAIN_ELF := target/rpi4/aarch64-unknown-none/release/chainloader
PUSH      := target/push/$(HOST)/release/quartet-push
chainloader: build/rpi4/chainloader/kernel8.img
build/rpi4/chainloader/kernel8.img: $(SOURCES) chainloader.ld
	cargo build --release --features board-rpi4 --bin chainloader --target-dir target/rpi4
	@mkdir -p $(@D)
	$(OBJCOPY) -O binary $(CHAIN_ELF) $@
	@echo "chainloader: $@ ($$(stat -c %s $@) bytes)"
push-tool:
	cargo build --release --manifest-path tools/push/Cargo.toml --target $(HOST) --target-dir target/push
PUSH_IMAGE ?= build/rpi4/kernel8.img
push: rpi4 push-tool
	@test -n "$(TTY)" || { echo "usage: make push TTY=/dev/ttyUSB0 (or /dev/pts/N, tcp:HOST:PORT, unix:PATH) [PUSH_IMAGE=file]"; exit 2; }
	$(PUSH) "$(TTY)" "$(PUSH_IMAGE)"

## make sdcard DEST=/media/you/boot: copy kernel8.img and config.txt onto a mounted boot partition.
sdcard: rpi4
	@test -n "$(DEST)" || { echo "usage: make sdcard DEST=/path/to/mounted/boot/partition"; exit 2; }
	cp build/rpi4/kernel8.img build/rpi4/config.txt "$(DEST)/"
	@echo "copied; the partition also needs start4.elf, fixup4.dat and bcm2711-rpi-4-b.dtb (make sdcard-image builds a whole card)"

## make sdcard-image: build/rpi4/sdcard.img, a whole card (partition table, FAT32 boot partition
## with the firmware, the device trees, config.txt, kernel8.img and a MANIFEST.txt), built
## without root. make flash DEV=/dev/sdX writes it to a removable card (DRY_RUN=1: only check).
sdcard-image: setup-sdcard rpi4
	tools/sdcard-image
flash: sdcard-image
	@test -n "$(DEV)" || { echo "usage: make flash DEV=/dev/sdX (the whole card, not a partition)"; exit 2; }
	tools/flash $(if $(filter 1,$(DRY_RUN)),--dry-run) "$(DEV)" build/rpi4/sdcard.img

## make gdb: boot QEMU halted with a gdb server, and attach gdb-multiarch to it.
gdb: setup image
	tools/qemu-run --board virt --image build/virt/kernel8.img --gdb &
	gdb-multiarch -q build/virt/quartet.elf -ex 'target remote :1234'

## make doc: API docs for the kernel crate. make book: the tutorial from docs/ as HTML in
## build/book, then its links and anchors checked (tools/book; installs mdbook with cargo if
## missing, or prints the commands; the config is book.toml at the top, not in docs/).
doc:
	cargo doc --no-deps --document-private-items
book:
	tools/book

clean:
	cargo clean
	rm -rf build/virt build/rpi4 build/book
