// The parts of SQLite's C interface (sqlite3.h) that the shim uses,
// declared here so that building ledgerq needs no SQLite headers on the
// machine: the library itself is the one github.com/mattn/go-sqlite3
// compiles into the binary, and these are its stable, versioned objects
// (sqlite3_vfs up to version 3, sqlite3_io_methods up to version 3).
#ifndef LEDGERQ_WALBUF_H
#define LEDGERQ_WALBUF_H

typedef long long lq_int64;

typedef struct lq_file lq_file;
typedef struct lq_io_methods lq_io_methods;
typedef struct lq_vfs lq_vfs;

struct lq_file {
	const lq_io_methods *pMethods;
};

struct lq_io_methods {
	int iVersion;
	int (*xClose)(lq_file *);
	int (*xRead)(lq_file *, void *, int, lq_int64);
	int (*xWrite)(lq_file *, const void *, int, lq_int64);
	int (*xTruncate)(lq_file *, lq_int64);
	int (*xSync)(lq_file *, int);
	int (*xFileSize)(lq_file *, lq_int64 *);
	int (*xLock)(lq_file *, int);
	int (*xUnlock)(lq_file *, int);
	int (*xCheckReservedLock)(lq_file *, int *);
	int (*xFileControl)(lq_file *, int, void *);
	int (*xSectorSize)(lq_file *);
	int (*xDeviceCharacteristics)(lq_file *);
	int (*xShmMap)(lq_file *, int, int, int, void volatile **);
	int (*xShmLock)(lq_file *, int, int, int);
	void (*xShmBarrier)(lq_file *);
	int (*xShmUnmap)(lq_file *, int);
	int (*xFetch)(lq_file *, lq_int64, int, void **);
	int (*xUnfetch)(lq_file *, lq_int64, void *);
};

typedef void (*lq_syscall_ptr)(void);

struct lq_vfs {
	int iVersion;
	int szOsFile;
	int mxPathname;
	lq_vfs *pNext;
	const char *zName;
	void *pAppData;
	int (*xOpen)(lq_vfs *, const char *, lq_file *, int, int *);
	int (*xDelete)(lq_vfs *, const char *, int);
	int (*xAccess)(lq_vfs *, const char *, int, int *);
	int (*xFullPathname)(lq_vfs *, const char *, int, char *);
	void *(*xDlOpen)(lq_vfs *, const char *);
	void (*xDlError)(lq_vfs *, int, char *);
	void (*(*xDlSym)(lq_vfs *, void *, const char *))(void);
	void (*xDlClose)(lq_vfs *, void *);
	int (*xRandomness)(lq_vfs *, int, char *);
	int (*xSleep)(lq_vfs *, int);
	int (*xCurrentTime)(lq_vfs *, double *);
	int (*xGetLastError)(lq_vfs *, int, char *);
	int (*xCurrentTimeInt64)(lq_vfs *, lq_int64 *);
	int (*xSetSystemCall)(lq_vfs *, const char *, lq_syscall_ptr);
	lq_syscall_ptr (*xGetSystemCall)(lq_vfs *, const char *);
	const char *(*xNextSystemCall)(lq_vfs *, const char *);
};

// From the SQLite library linked into the binary.
extern lq_vfs *sqlite3_vfs_find(const char *);
extern int sqlite3_vfs_register(lq_vfs *, int);

#define LQ_OK 0
#define LQ_ERROR 1
#define LQ_NOMEM 7
#define LQ_OPEN_WAL 0x00080000

int lq_walbuf_register(const char *name, int capacity);
long long lq_walbuf_stat(int which);

#endif
