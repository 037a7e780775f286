// Compile-time configuration shared by the rasterizer kernels and their launchers.
#pragma once

#define ORTHO_TILE 16                          // tile edge in pixels (reference: 16x16)
#define ORTHO_BLOCK (ORTHO_TILE * ORTHO_TILE)  // render threads per tile, one per pixel
#define ORTHO_PRE_THREADS 256                  // preprocess / binning threads per block
#define ORTHO_SORT_THREADS 512                 // threads of the per-tile sort
#define ORTHO_SORT_SMEM_KEYS 4096              // tiles with more pairs are sorted in global memory
#define ORTHO_SCAN_THREADS 1024                // one block scans all tile counts
#define ORTHO_ALIGN 256                        // workspace sub-buffer alignment in bytes
