// A VFS shim that gathers the frames a commit appends to a WAL file and
// hands them to the base VFS in one write. See doc.go for why and for the
// rules that keep it safe; in short:
//
//   - only writes that continue the buffer, or a frame header that starts
//     one, are held; a frame header carrying the commit mark and the page
//     after it are always on their way to the file before xWrite returns,
//     so a commit is wholly in the file before SQLite publishes it in the
//     wal-index, and every write error reaches the write that caused it;
//   - every other operation on the file (read, sync, truncate, size, file
//     control, close) and every write elsewhere hands the held bytes over
//     first, so the file always looks as if nothing had been held.
#include <stdlib.h>
#include <string.h>
#include "walbuf.h"

typedef struct walbuf_file {
	lq_file base;       // our methods
	unsigned char *buf; // held bytes, for file offsets [off, off+len)
	int cap;
	int len;
	lq_int64 off;
	lq_int64 commit_end; // >0: flush once the held bytes reach this offset
	int page_size;       // from the WAL header; 0 while unknown (nothing is held)
	lq_file *real;       // the base VFS's file, right after this struct
} walbuf_file;

static lq_vfs walbuf_vfs;
static lq_vfs *base_vfs;
static int walbuf_cap;
static lq_io_methods walbuf_methods;

// Counters for the tests and the metrics: writes held, bytes handed over in
// flushes, flushes, writes passed straight through.
static long long st_held, st_flushes, st_flushed_bytes, st_direct;

static void count(long long *c, long long n) { __atomic_add_fetch(c, n, __ATOMIC_RELAXED); }

long long lq_walbuf_stat(int which) {
	switch (which) {
	case 0: return __atomic_load_n(&st_held, __ATOMIC_RELAXED);
	case 1: return __atomic_load_n(&st_flushes, __ATOMIC_RELAXED);
	case 2: return __atomic_load_n(&st_flushed_bytes, __ATOMIC_RELAXED);
	case 3: return __atomic_load_n(&st_direct, __ATOMIC_RELAXED);
	}
	return -1;
}

static unsigned int be32(const unsigned char *p) {
	return ((unsigned int)p[0] << 24) | ((unsigned int)p[1] << 16) | ((unsigned int)p[2] << 8) | p[3];
}

// page_size_of reads the page size from a WAL header (32 bytes at offset 0:
// magic 0x377f0682 or 0x377f0683, version, page size, ...), or 0.
static int page_size_of(const unsigned char *h) {
	unsigned int magic = be32(h), ps = be32(h + 8);
	if ((magic & 0xFFFFFFFE) != 0x377f0682) return 0;
	if (ps == 1) ps = 65536; // a page size of 65536 is stored as 1
	if (ps < 512 || ps > 65536 || (ps & (ps - 1)) != 0) return 0;
	return (int)ps;
}

// maxWrite is the most one call of the base VFS's xWrite may be given: the
// unix VFS masks a write's length with 0x1ffff, so a longer one would be
// cut short and fail with SQLITE_FULL. 31 pages.
#define maxWrite (31 * 4096)

static int flush(walbuf_file *f) {
	if (f->len == 0) return LQ_OK;
	int n = f->len;
	lq_int64 off = f->off;
	f->len = 0;
	f->commit_end = 0;
	count(&st_flushes, 1);
	count(&st_flushed_bytes, n);
	for (int done = 0; done < n;) {
		int k = n - done < maxWrite ? n - done : maxWrite;
		int rc = f->real->pMethods->xWrite(f->real, f->buf + done, k, off + done);
		if (rc != LQ_OK) return rc;
		done += k;
	}
	return LQ_OK;
}

static int is_frame_header(walbuf_file *f, int amt, lq_int64 off) {
	return f->page_size > 0 && amt == 24 && off >= 32 && (off - 32) % (f->page_size + 24) == 0;
}

static int wb_write(lq_file *pf, const void *p, int amt, lq_int64 off) {
	walbuf_file *f = (walbuf_file *)pf;
	const unsigned char *b = p;
	int rc;
	if (off == 0 && amt >= 32) {
		// The WAL header, written when the WAL starts (over): learn the
		// page size the frames will have.
		f->page_size = page_size_of(b);
	}
	int follows = f->len > 0 && off == f->off + f->len;
	int header = is_frame_header(f, amt, off);
	int commit = header && be32(b + 4) != 0;
	// Hold a write when it continues the buffer, or when it is the header
	// of a frame without the commit mark (the start of a run of frames). A
	// commit frame that starts a run, a page rewritten in place and the
	// checksums SQLite rewrites after a spill all go straight through.
	if (!(follows || (header && !commit)) || amt > f->cap) {
		if ((rc = flush(f)) != LQ_OK) return rc;
		count(&st_direct, 1);
		return f->real->pMethods->xWrite(f->real, p, amt, off);
	}
	if (f->len > 0 && !follows) {
		if ((rc = flush(f)) != LQ_OK) return rc;
	}
	if (f->len + amt > f->cap) {
		if ((rc = flush(f)) != LQ_OK) return rc;
		if (!header) {
			count(&st_direct, 1);
			return f->real->pMethods->xWrite(f->real, p, amt, off);
		}
	}
	if (f->len == 0) f->off = off;
	memcpy(f->buf + f->len, b, amt);
	f->len += amt;
	count(&st_held, 1);
	if (commit) f->commit_end = off + 24 + f->page_size;
	if (f->commit_end > 0 && f->off + f->len >= f->commit_end) return flush(f);
	return LQ_OK;
}

static int wb_close(lq_file *pf) {
	walbuf_file *f = (walbuf_file *)pf;
	int rc = flush(f);
	int rc2 = f->real->pMethods->xClose(f->real);
	free(f->buf);
	f->buf = 0;
	return rc != LQ_OK ? rc : rc2;
}

static int wb_read(lq_file *pf, void *p, int amt, lq_int64 off) {
	walbuf_file *f = (walbuf_file *)pf;
	int rc = flush(f);
	if (rc != LQ_OK) return rc;
	rc = f->real->pMethods->xRead(f->real, p, amt, off);
	if (rc == LQ_OK && off == 0 && amt >= 32 && f->page_size == 0) f->page_size = page_size_of(p);
	return rc;
}

static int wb_truncate(lq_file *pf, lq_int64 size) {
	walbuf_file *f = (walbuf_file *)pf;
	int rc = flush(f);
	return rc != LQ_OK ? rc : f->real->pMethods->xTruncate(f->real, size);
}

static int wb_sync(lq_file *pf, int flags) {
	walbuf_file *f = (walbuf_file *)pf;
	int rc = flush(f);
	return rc != LQ_OK ? rc : f->real->pMethods->xSync(f->real, flags);
}

static int wb_file_size(lq_file *pf, lq_int64 *size) {
	walbuf_file *f = (walbuf_file *)pf;
	int rc = flush(f);
	return rc != LQ_OK ? rc : f->real->pMethods->xFileSize(f->real, size);
}

static int wb_lock(lq_file *pf, int l) {
	walbuf_file *f = (walbuf_file *)pf;
	return f->real->pMethods->xLock(f->real, l);
}

static int wb_unlock(lq_file *pf, int l) {
	walbuf_file *f = (walbuf_file *)pf;
	return f->real->pMethods->xUnlock(f->real, l);
}

static int wb_check_reserved(lq_file *pf, int *out) {
	walbuf_file *f = (walbuf_file *)pf;
	return f->real->pMethods->xCheckReservedLock(f->real, out);
}

static int wb_file_control(lq_file *pf, int op, void *arg) {
	walbuf_file *f = (walbuf_file *)pf;
	int rc = flush(f);
	return rc != LQ_OK ? rc : f->real->pMethods->xFileControl(f->real, op, arg);
}

static int wb_sector_size(lq_file *pf) {
	walbuf_file *f = (walbuf_file *)pf;
	return f->real->pMethods->xSectorSize(f->real);
}

static int wb_device_characteristics(lq_file *pf) {
	walbuf_file *f = (walbuf_file *)pf;
	return f->real->pMethods->xDeviceCharacteristics(f->real);
}

// A WAL file has no shared memory and is never memory-mapped; these only
// forward, for completeness.
static int wb_shm_map(lq_file *pf, int pg, int sz, int ext, void volatile **pp) {
	walbuf_file *f = (walbuf_file *)pf;
	return f->real->pMethods->xShmMap(f->real, pg, sz, ext, pp);
}

static int wb_shm_lock(lq_file *pf, int o, int n, int fl) {
	walbuf_file *f = (walbuf_file *)pf;
	return f->real->pMethods->xShmLock(f->real, o, n, fl);
}

static void wb_shm_barrier(lq_file *pf) {
	walbuf_file *f = (walbuf_file *)pf;
	f->real->pMethods->xShmBarrier(f->real);
}

static int wb_shm_unmap(lq_file *pf, int del) {
	walbuf_file *f = (walbuf_file *)pf;
	return f->real->pMethods->xShmUnmap(f->real, del);
}

static int wb_fetch(lq_file *pf, lq_int64 off, int amt, void **pp) {
	walbuf_file *f = (walbuf_file *)pf;
	return f->real->pMethods->xFetch(f->real, off, amt, pp);
}

static int wb_unfetch(lq_file *pf, lq_int64 off, void *p) {
	walbuf_file *f = (walbuf_file *)pf;
	return f->real->pMethods->xUnfetch(f->real, off, p);
}

static int wb_open(lq_vfs *vfs, const char *name, lq_file *pf, int flags, int *out) {
	(void)vfs;
	if (!(flags & LQ_OPEN_WAL)) {
		// Everything but a WAL is the base VFS's file itself: SQLite calls
		// the base methods directly, with nothing in between.
		return base_vfs->xOpen(base_vfs, name, pf, flags, out);
	}
	walbuf_file *f = (walbuf_file *)pf;
	memset(f, 0, sizeof(*f));
	f->real = (lq_file *)(f + 1);
	int rc = base_vfs->xOpen(base_vfs, name, f->real, flags, out);
	if (rc != LQ_OK) {
		f->base.pMethods = 0;
		return rc;
	}
	f->buf = malloc(walbuf_cap);
	if (f->buf == 0) {
		if (f->real->pMethods) f->real->pMethods->xClose(f->real);
		f->base.pMethods = 0;
		return LQ_NOMEM;
	}
	f->cap = walbuf_cap;
	unsigned char h[32];
	lq_int64 size = 0;
	if (f->real->pMethods->xFileSize(f->real, &size) == LQ_OK && size >= 32 &&
	    f->real->pMethods->xRead(f->real, h, 32, 0) == LQ_OK) {
		f->page_size = page_size_of(h);
	}
	f->base.pMethods = &walbuf_methods;
	return LQ_OK;
}

static int wb_delete(lq_vfs *v, const char *n, int s) { (void)v; return base_vfs->xDelete(base_vfs, n, s); }
static int wb_access(lq_vfs *v, const char *n, int fl, int *o) { (void)v; return base_vfs->xAccess(base_vfs, n, fl, o); }
static int wb_full_pathname(lq_vfs *v, const char *n, int no, char *o) { (void)v; return base_vfs->xFullPathname(base_vfs, n, no, o); }
static void *wb_dlopen(lq_vfs *v, const char *n) { (void)v; return base_vfs->xDlOpen(base_vfs, n); }
static void wb_dlerror(lq_vfs *v, int n, char *o) { (void)v; base_vfs->xDlError(base_vfs, n, o); }
static void (*wb_dlsym(lq_vfs *v, void *h, const char *s))(void) { (void)v; return base_vfs->xDlSym(base_vfs, h, s); }
static void wb_dlclose(lq_vfs *v, void *h) { (void)v; base_vfs->xDlClose(base_vfs, h); }
static int wb_randomness(lq_vfs *v, int n, char *o) { (void)v; return base_vfs->xRandomness(base_vfs, n, o); }
static int wb_sleep(lq_vfs *v, int us) { (void)v; return base_vfs->xSleep(base_vfs, us); }
static int wb_current_time(lq_vfs *v, double *t) { (void)v; return base_vfs->xCurrentTime(base_vfs, t); }
static int wb_last_error(lq_vfs *v, int n, char *o) { (void)v; return base_vfs->xGetLastError(base_vfs, n, o); }
static int wb_current_time64(lq_vfs *v, lq_int64 *t) { (void)v; return base_vfs->xCurrentTimeInt64(base_vfs, t); }

int lq_walbuf_register(const char *name, int capacity) {
	if (base_vfs != 0) return LQ_OK;
	lq_vfs *base = sqlite3_vfs_find(0);
	if (base == 0) return LQ_ERROR;
	if (base->iVersion < 2) return LQ_ERROR;
	walbuf_cap = capacity;
	walbuf_methods = (lq_io_methods){
		.iVersion = 3,
		.xClose = wb_close, .xRead = wb_read, .xWrite = wb_write, .xTruncate = wb_truncate,
		.xSync = wb_sync, .xFileSize = wb_file_size, .xLock = wb_lock, .xUnlock = wb_unlock,
		.xCheckReservedLock = wb_check_reserved, .xFileControl = wb_file_control,
		.xSectorSize = wb_sector_size, .xDeviceCharacteristics = wb_device_characteristics,
		.xShmMap = wb_shm_map, .xShmLock = wb_shm_lock, .xShmBarrier = wb_shm_barrier,
		.xShmUnmap = wb_shm_unmap, .xFetch = wb_fetch, .xUnfetch = wb_unfetch,
	};
	int sz = (int)sizeof(walbuf_file) + base->szOsFile;
	walbuf_vfs = (lq_vfs){
		.iVersion = 2,
		.szOsFile = sz > base->szOsFile ? sz : base->szOsFile,
		.mxPathname = base->mxPathname,
		.zName = name,
		.xOpen = wb_open, .xDelete = wb_delete, .xAccess = wb_access,
		.xFullPathname = wb_full_pathname, .xDlOpen = wb_dlopen, .xDlError = wb_dlerror,
		.xDlSym = wb_dlsym, .xDlClose = wb_dlclose, .xRandomness = wb_randomness,
		.xSleep = wb_sleep, .xCurrentTime = wb_current_time, .xGetLastError = wb_last_error,
		.xCurrentTimeInt64 = wb_current_time64,
	};
	base_vfs = base;
	return sqlite3_vfs_register(&walbuf_vfs, 0);
}
