/* emu.h — the device-pointer checks of the emulated CUDA runtime (emu.cc), for the emulated
 * kernels: dies naming `what` unless [p, p + bytes) lies inside one device allocation
 * (emu_dev) or p outside every one (emu_host). */
#ifndef CL_EMU_EMU_H
#define CL_EMU_EMU_H

#include <stddef.h>

void emu_dev(const void *p, size_t bytes, const char *what);
void emu_host(const void *p, size_t bytes, const char *what);

#endif
