"""Linux x86-64 constants: mmap/mprotect/madvise arguments, vm_flags, page geometry.

Values are the kernel's (include/uapi/asm-generic/mman-common.h, mman.h,
include/linux/mm.h of the 5.17 era, arch/x86 page headers) so raw numbers in traces
and user code mean what they mean on Linux. Simulator-only choices are marked as such.
"""
from __future__ import annotations

# --- page geometry (arch/x86/include/asm/page_types.h, pgtable_64_types.h) -------------
PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_MASK = ~(PAGE_SIZE - 1)
PMD_SHIFT = 21
PMD_SIZE = 1 << PMD_SHIFT
PMD_MASK = ~(PMD_SIZE - 1)
PUD_SHIFT = 30
PUD_SIZE = 1 << PUD_SHIFT
PGDIR_SHIFT = 39                     # 4-level paging: the PML4 level
PTRS_PER_PTE = 512
PTRS_PER_PMD = 512
PTRS_PER_PUD = 512
PTRS_PER_PGD = 512
HPAGE_PMD_SHIFT = PMD_SHIFT
HPAGE_PMD_SIZE = PMD_SIZE
HPAGE_PMD_NR = 1 << (PMD_SHIFT - PAGE_SHIFT)   # 512 base pages per THP

# Top of the user address space with 4-level paging (TASK_SIZE_MAX): the last page
# below 2^47 is left unmapped as a guard against non-canonical speculation.
TASK_SIZE = (1 << 47) - PAGE_SIZE
# mm/mmap.c: bottom-up searches start at a third of the address space.
TASK_UNMAPPED_BASE = ((TASK_SIZE // 3) + PAGE_SIZE - 1) & PAGE_MASK
# flush_tlb_mm_range(..., TLB_FLUSH_ALL, ...) means "the whole address space".
TLB_FLUSH_ALL = (1 << 64) - 1

# Simulator choices (not kernel constants): a fixed, unrandomised mmap_base for the
# top-down layout, the common distribution value of vm.mmap_min_addr, and the default
# vm.max_map_count (USHRT_MAX - 5).
DEFAULT_MMAP_BASE = 0x7F0000000000
DEFAULT_MMAP_MIN_ADDR = 65536
DEFAULT_MAX_MAP_COUNT = 65530

# --- mmap/mprotect protection bits (mman-common.h) --------------------------------------
PROT_NONE = 0x0
PROT_READ = 0x1
PROT_WRITE = 0x2
PROT_EXEC = 0x4
PROT_SEM = 0x8
PROT_GROWSDOWN = 0x01000000
PROT_GROWSUP = 0x02000000

# --- mmap flags (mman-common.h, asm-generic/mman.h; x86 uses the generic values) -------
MAP_SHARED = 0x01
MAP_PRIVATE = 0x02
MAP_SHARED_VALIDATE = 0x03
MAP_DROPPABLE = 0x08
MAP_TYPE = 0x0F
MAP_FIXED = 0x10
MAP_ANONYMOUS = 0x20
MAP_ANON = MAP_ANONYMOUS
MAP_32BIT = 0x40                    # x86: place the mapping in the low 2 GiB
MAP_GROWSDOWN = 0x0100
MAP_DENYWRITE = 0x0800
MAP_EXECUTABLE = 0x1000
MAP_LOCKED = 0x2000
MAP_NORESERVE = 0x4000
MAP_POPULATE = 0x8000
MAP_NONBLOCK = 0x10000
MAP_STACK = 0x20000
MAP_HUGETLB = 0x40000
MAP_SYNC = 0x80000
MAP_FIXED_NOREPLACE = 0x100000
MAP_UNINITIALIZED = 0x4000000
MAP_HUGE_SHIFT = 26                 # MAP_HUGETLB: log2 of the huge page size in bits 26..31
MAP_HUGE_MASK = 0x3F
MAP_HUGE_2MB = 21 << MAP_HUGE_SHIFT
MAP_HUGE_1GB = 30 << MAP_HUGE_SHIFT
# include/linux/mman.h: the flags MAP_SHARED keeps (and MAP_SHARED_VALIDATE accepts)
LEGACY_MAP_MASK = (MAP_SHARED | MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS | MAP_DENYWRITE
                   | MAP_EXECUTABLE | MAP_UNINITIALIZED | MAP_GROWSDOWN | MAP_LOCKED
                   | MAP_NORESERVE | MAP_POPULATE | MAP_NONBLOCK | MAP_STACK | MAP_HUGETLB)

# --- mremap flags (uapi/linux/mman.h) ---------------------------------------------------
MREMAP_MAYMOVE = 1
MREMAP_FIXED = 2
MREMAP_DONTUNMAP = 4

# --- mlock2 / mlockall flags (asm-generic/mman-common.h, mman.h) ------------------------
MLOCK_ONFAULT = 0x01
MCL_CURRENT = 1
MCL_FUTURE = 2
MCL_ONFAULT = 4

# --- msync flags (asm-generic/mman-common.h) --------------------------------------------
MS_ASYNC = 1
MS_INVALIDATE = 2
MS_SYNC = 4

# --- NUMA memory policies (uapi/linux/mempolicy.h; MAX_NUMNODES of CONFIG_NODES_SHIFT=10,
# the x86-64 distribution kernels') ----------------------------------------------------
MPOL_DEFAULT = 0
MPOL_PREFERRED = 1
MPOL_BIND = 2
MPOL_INTERLEAVE = 3
MPOL_LOCAL = 4
MPOL_PREFERRED_MANY = 5
MPOL_WEIGHTED_INTERLEAVE = 6
MPOL_MAX = 7
MPOL_F_STATIC_NODES = 1 << 15
MPOL_F_RELATIVE_NODES = 1 << 14
MPOL_F_NUMA_BALANCING = 1 << 13
MPOL_MODE_FLAGS = MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES | MPOL_F_NUMA_BALANCING
MPOL_F_MOF = 1 << 3                 # internal: migrate on fault (NUMA balancing)
MPOL_F_MORON = 1 << 4               # internal: migrate on protnone reference
MPOL_MF_STRICT = 1 << 0             # mbind flags
MPOL_MF_MOVE = 1 << 1
MPOL_MF_MOVE_ALL = 1 << 2
MPOL_MF_VALID = MPOL_MF_STRICT | MPOL_MF_MOVE | MPOL_MF_MOVE_ALL
MPOL_F_NODE = 1 << 0                # get_mempolicy flags
MPOL_F_ADDR = 1 << 1
MPOL_F_MEMS_ALLOWED = 1 << 2
MAX_NUMNODES = 1 << 10

# --- /proc/PID/clear_refs values (fs/proc/task_mmu.c enum clear_refs_types) ------------
CLEAR_REFS_ALL = 1
CLEAR_REFS_ANON = 2
CLEAR_REFS_MAPPED = 3
CLEAR_REFS_SOFT_DIRTY = 4
CLEAR_REFS_MM_HIWATER_RSS = 5

# --- madvise advice (mman-common.h) -----------------------------------------------------
MADV_NORMAL = 0
MADV_RANDOM = 1
MADV_SEQUENTIAL = 2
MADV_WILLNEED = 3
MADV_DONTNEED = 4
MADV_FREE = 8
MADV_REMOVE = 9
MADV_DONTFORK = 10
MADV_DOFORK = 11
MADV_MERGEABLE = 12
MADV_UNMERGEABLE = 13
MADV_HUGEPAGE = 14
MADV_NOHUGEPAGE = 15
MADV_DONTDUMP = 16
MADV_DODUMP = 17
MADV_WIPEONFORK = 18
MADV_KEEPONFORK = 19
MADV_COLD = 20
MADV_PAGEOUT = 21
MADV_POPULATE_READ = 22
MADV_POPULATE_WRITE = 23
MADV_DONTNEED_LOCKED = 24
MADV_COLLAPSE = 25
MADV_HWPOISON = 100
MADV_SOFT_OFFLINE = 101
MADV_GUARD_INSTALL = 102
MADV_GUARD_REMOVE = 103

# --- vm_flags (include/linux/mm.h, 5.17; x86-64 with CONFIG_MEM_SOFT_DIRTY and PKU) -----
VM_NONE = 0x00000000
VM_READ = 0x00000001
VM_WRITE = 0x00000002
VM_EXEC = 0x00000004
VM_SHARED = 0x00000008
VM_MAYREAD = 0x00000010
VM_MAYWRITE = 0x00000020
VM_MAYEXEC = 0x00000040
VM_MAYSHARE = 0x00000080
VM_GROWSDOWN = 0x00000100
VM_UFFD_MISSING = 0x00000200
VM_PFNMAP = 0x00000400
VM_UFFD_WP = 0x00001000
VM_LOCKED = 0x00002000
VM_IO = 0x00004000
VM_SEQ_READ = 0x00008000
VM_RAND_READ = 0x00010000
VM_DONTCOPY = 0x00020000
VM_DONTEXPAND = 0x00040000
VM_LOCKONFAULT = 0x00080000
VM_ACCOUNT = 0x00100000
VM_NORESERVE = 0x00200000
VM_HUGETLB = 0x00400000
VM_SYNC = 0x00800000
VM_ARCH_1 = 0x01000000
VM_WIPEONFORK = 0x02000000
VM_DONTDUMP = 0x04000000
VM_SOFTDIRTY = 0x08000000
VM_MIXEDMAP = 0x10000000
VM_HUGEPAGE = 0x20000000
VM_NOHUGEPAGE = 0x40000000
VM_MERGEABLE = 0x80000000
# x86 protection keys live in VM_HIGH_ARCH_0..3 (bits 32..35).
VM_PKEY_SHIFT = 32
VM_PKEY_BIT0 = 1 << 32
VM_PKEY_BIT1 = 1 << 33
VM_PKEY_BIT2 = 1 << 34
VM_PKEY_BIT3 = 1 << 35
VM_PKEY_MASK = VM_PKEY_BIT0 | VM_PKEY_BIT1 | VM_PKEY_BIT2 | VM_PKEY_BIT3
VM_DROPPABLE = 1 << 40              # 6.11 MAP_DROPPABLE (64-bit only)
VM_SEALED = 1 << 63                 # 6.10 mseal() (_BITUL(63), 64-bit only)
VM_GROWSUP = VM_NONE                # no upward-growing stacks on x86

# Composite masks the kernel uses by these names.
VM_ACCESS_FLAGS = VM_READ | VM_WRITE | VM_EXEC
VM_SPECIAL = VM_IO | VM_DONTEXPAND | VM_PFNMAP | VM_MIXEDMAP   # never merged
VM_LOCKED_MASK = VM_LOCKED | VM_LOCKONFAULT

# --- protection keys (uapi/asm-generic/mman-common.h) -----------------------------------
PKEY_DISABLE_ACCESS = 0x1
PKEY_DISABLE_WRITE = 0x2
PKEY_ACCESS_MASK = PKEY_DISABLE_ACCESS | PKEY_DISABLE_WRITE
ARCH_MAX_PKEY = 16                  # x86 PKRU: 16 keys, key 0 allocated at mm creation

# --- limits and defaults (simulator choices where marked) -------------------------------
STACK_GUARD_GAP = 256 << PAGE_SHIFT  # mm/mmap.c stack_guard_gap: 256 pages (1 MiB)
DEFAULT_RLIMIT_STACK = 8 << 20      # _STK_LIM, ulimit -s 8192
DEFAULT_RLIMIT_MEMLOCK = 8 << 20    # MLOCK_LIMIT since 5.16 (8 MiB)
UIO_MAXIOV = 1024                   # process_madvise's iovec limit
# Simulator choice: where the heap starts in a process with no exec image (Linux puts
# start_brk just after the binary's bss, randomised with ASLR).
DEFAULT_START_BRK = 0x555555756000
# The 32-bit window MAP_32BIT searches (arch/x86/kernel/sys_x86_64.c find_start_end,
# without randomisation): [1 GiB, 2 GiB).
MAP_32BIT_BASE = 0x40000000
MAP_32BIT_END = 0x80000000
