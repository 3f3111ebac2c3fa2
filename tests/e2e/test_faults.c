/* Storage faults of a SQLite database, end to end through the CLI: the file on a
 * read-only filesystem, a filesystem that turns read-only mid-run, a full disk, and
 * another process holding the write lock, briefly and for longer than the timeouts.
 * Each ends in a clear error (non-zero exit, the cause and the database named) or a
 * completed run; the file stays intact (PRAGMA integrity_check) and, once the fault is
 * gone, a resume ends exactly like an uninterrupted run over the same data.
 *
 * Mechanisms, as root in a mount namespace of the case's own (so no mount outlives a
 * case, even a crashed one): a tmpfs remounted read-only; an ext4 image on a loop
 * device mounted errors=remount-ro whose error is raised through
 * /sys/fs/ext4/DEV/trigger_fs_error (what the kernel does when the disk under a
 * database fails); a small tmpfs filled by a file; a second SQLite connection holding
 * BEGIN IMMEDIATE. Without the right to mount: chattr +i or chmod for the read-only
 * file, RLIMIT_FSIZE for the full disk, SKIP for the mid-run read-only case, each
 * saying so (FEEDLINE_TEST_NO_MOUNT=1 takes them where mounting works). SQLite files
 * only: the PostgreSQL pass skips these cases. */
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "pipeline/pipeline.h"
#include "support/dataset.h"
#include "support/e2e.h"
#include "support/fakeproc.h"
#include "support/fixtures.h"
#include "support/outcome.h"
#include "util/buf.h"
#include "util/mem.h"
#include "util/timeutil.h"

#define DATASET 100
#define SEED 23
#define RUN_TIMEOUT_MS 120000
/* The endpoint's latency while a run is disturbed: it keeps the run going for a few
 * seconds, so that the fault lands mid-run. */
#define SLOW_MS "30"
/* The run is disturbed once this many conversations are classified. */
#define PROGRESS (DATASET / 4)

static int sqlite_pass(const char *name) {
    const char *pg = getenv("FEEDLINE_TEST_PG");
    if (!pg || !pg[0]) return 1;
    fprintf(stdout, "    SKIP %s: faults of a SQLite file (they run in the SQLite pass)\n", name);
    test_checked();
    return 0;
}

static void skip(const char *name, const char *why) {
    fprintf(stdout, "    SKIP %s: %s\n", name, why);
    test_checked();
}

/* ------------------------------------------------------------------ commands */

/* Runs a command; its exit status (127: not found). Output shown when above ok. */
static int cmd_ok(const char *const argv[], int ok) {
    char *out = NULL, *err = NULL;
    int rc = fx_run((char *const *)argv, NULL, &out, &err);
    if (rc < 0 || rc > ok)
        fprintf(stdout, "    %s exited %d: %s%s", argv[0], rc, out ? out : "", err ? err : "");
    free(out);
    free(err);
    return rc;
}

static int cmd(const char *const argv[]) { return cmd_ok(argv, 0); }

/* The environment of a run against the fake endpoint fp (NULL: offline; fx_feedline
 * adds the vocabulary), plus extra ("K=V" or NULL). */
static void env_for(e2e_env *s, const fakeproc *fp, const char *extra) {
    memset(s, 0, sizeof *s);
    if (fp) e2e_env_for(s, fp);
    if (extra) e2e_env_set(s, "%s", extra);
}

/* `feedline run` (resume_id 0) or `feedline resume ID` on db: the exit status, stderr
 * in *err (may be NULL). With fp, against that endpoint; offline otherwise. */
static int feedline_run(const char *db, const fakeproc *fp, int64_t resume_id, const char *extra,
                        char **err) {
    e2e_env env;
    env_for(&env, fp, extra);
    char id[24];
    snprintf(id, sizeof id, "%lld", (long long)resume_id);
    const char *run[] = {"run", "--db", db, "--llm", fp ? "openai" : "local",
                         "--concurrency", "4", NULL};
    const char *resume[] = {"resume", "--db", db, id, NULL};
    char *out = NULL, *e = NULL;
    int rc = fx_feedline(resume_id ? resume : run, (const char *const *)env.e, &out, &e);
    if (rc != 0 && !err)
        fprintf(stdout, "    feedline exited %d: %s%s", rc, out ? out : "", e ? e : "");
    free(out);
    if (err) *err = e;
    else free(e);
    e2e_env_free(&env);
    return rc;
}

/* `feedline run` on db against fp in the background, its output in log. */
static pid_t feedline_bg(const char *db, const fakeproc *fp, const char *extra, const char *log) {
    char *argv[] = {(char *)e2e_bin(), "run", "--db", (char *)db, "--llm", "openai",
                    "--concurrency", "4", NULL};
    e2e_env env;
    env_for(&env, fp, extra);
    pid_t pid = fakeproc_spawn(argv, env.e, log);
    e2e_env_free(&env);
    return pid;
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    buf_t b = BUF_INIT;
    char tmp[8192];
    size_t n;
    while (f && (n = fread(tmp, 1, sizeof tmp, f)) > 0) buf_append(&b, tmp, n);
    if (f) fclose(f);
    if (len) *len = b.len;
    return buf_detach(&b);
}

/* The line of text that contains needle (without its timestamp), or "". Caller frees. */
static char *line_with(const char *text, const char *needle) {
    const char *p = text ? strstr(text, needle) : NULL;
    if (!p) return xstrdup("");
    const char *a = p, *z = p;
    while (a > text && a[-1] != '\n') a--;
    while (*z && *z != '\n') z++;
    const char *msg = strstr(a, "Z ");
    if (msg && msg < p) a = msg + 2;
    return xasprintf("%.*s", (int)(z - a), a);
}

/* A database at path with the dataset file imported. */
static int import_into(const char *db, const char *file) {
    const char *args[] = {"import", "--db", db, file, NULL};
    char *out = NULL, *err = NULL;
    int rc = fx_feedline(args, NULL, &out, &err);
    if (rc != 0) fprintf(stdout, "    import failed: %s %s\n", out ? out : "", err ? err : "");
    free(out);
    free(err);
    return rc;
}

/* The uninterrupted run over the dataset: DIR/reference.db, its run is 1. With fp, at
 * the endpoint's current latency. NULL on failure. */
static char *reference(const char *dir, const char *file, const fakeproc *fp) {
    char *db = xasprintf("%s/reference.db", dir);
    if (import_into(db, file) != 0 || feedline_run(db, fp, 0, NULL, NULL) != 0) {
        free(db);
        return NULL;
    }
    return db;
}

static int fake_latency(const fakeproc *fp, const char *ms) {
    char body[64];
    snprintf(body, sizeof body, "{\"latency_ms\": %s}", ms);
    return fakeproc_post(fp, "/_config", body) == 200 ? 0 : -1;
}

/* Waits until run 1 of db has classified PROGRESS conversations (0), or the run ended
 * or timed out (-1). */
static int wait_progress(const char *db, pid_t run) {
    int64_t deadline = mono_ms() + 60000;
    while (mono_ms() < deadline && fakeproc_wait(run, 0) == -2) {
        if (outcome_int(db, "SELECT COUNT(*) FROM work_items WHERE run_id = ? AND phase ="
                            " 'classification' AND state = 'done'", 1) >= PROGRESS)
            return 0;
        sleep_ms(20);
    }
    fprintf(stdout, "    the run ended or made no progress before the fault\n");
    return -1;
}

/* PRAGMA integrity_check of the file says "ok". */
static int intact(const char *db) {
    sqlite3 *h = NULL;
    sqlite3_stmt *st = NULL;
    int ok = sqlite3_open_v2(db, &h, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK &&
             sqlite3_prepare_v2(h, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK &&
             sqlite3_step(st) == SQLITE_ROW &&
             !strcmp((const char *)sqlite3_column_text(st, 0), "ok");
    if (!ok) fprintf(stdout, "    integrity_check of %s: %s\n", db,
                     st && sqlite3_column_text(st, 0) ? (const char *)sqlite3_column_text(st, 0)
                                                      : sqlite3_errmsg(h));
    sqlite3_finalize(st);
    sqlite3_close(h);
    return ok;
}

/* The run's status and error as one line, for the test's output. */
static void show_run(const char *db, int64_t id) {
    run_record r = outcome_run(db, id);
    if (!r.status[0]) fprintf(stdout, "    no run was recorded\n");
    else fprintf(stdout, "    run %lld is %s%s%s\n", (long long)id, r.status,
                 r.error_message ? ": " : "", r.error_message ? r.error_message : "");
    run_record_free(&r);
}

/* The fault is gone: the file is intact, and `feedline resume` (or a new run, when
 * the failed one never started) ends like the reference. */
static void check_recovers(const char *ref, const char *db, const fakeproc *fp) {
    CHECK(intact(db));
    show_run(db, 1);
    /* A run its process could not mark failed is taken over by the resume: that
     * process is gone. */
    int64_t runs = outcome_int(db, "SELECT COUNT(*) FROM pipeline_runs WHERE ? > 0", 1);
    int64_t t0 = mono_ms();
    CHECK_INT(feedline_run(db, fp, runs > 0 ? 1 : 0, NULL, NULL), 0);
    fprintf(stdout, "    then the %s completed in %lld ms\n", runs > 0 ? "resume" : "run",
            (long long)(mono_ms() - t0));
    outcome_check_same(ref, 1, db, 1);
    CHECK(intact(db));
}

/* ------------------------------------------------------------------ mounts */

/* Mounts made by a case stay in a mount namespace of its own (each case is a forked
 * process): they go with it. NULL, or why this process cannot mount. */
static const char *private_mounts(void) {
    static char why[200];
    const char *no = getenv("FEEDLINE_TEST_NO_MOUNT"); /* to exercise the fallbacks */
    if (no && !strcmp(no, "1")) return "FEEDLINE_TEST_NO_MOUNT=1";
    if (unshare(CLONE_NEWNS) != 0) {
        snprintf(why, sizeof why, "cannot mount here: unshare(CLONE_NEWNS): %s", strerror(errno));
        return why;
    }
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
        snprintf(why, sizeof why, "cannot mount here: making / private: %s", strerror(errno));
        return why;
    }
    return NULL;
}

static const char *mount_tmpfs(const char *dir, const char *size) {
    static char why[200];
    char opts[64];
    snprintf(opts, sizeof opts, "size=%s", size);
    if (mount("tmpfs", dir, "tmpfs", 0, opts) == 0) return NULL;
    snprintf(why, sizeof why, "cannot mount a tmpfs on %s: %s", dir, strerror(errno));
    return why;
}

/* An ext4 filesystem in the file img (created), mounted on dir through a loop device,
 * turning read-only on its first error. NULL, or why not. */
static const char *mount_ext4(const char *img, const char *dir) {
    static char why[200];
    int fd = open(img, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int sized = fd >= 0 && ftruncate(fd, 32 << 20) == 0;
    if (fd >= 0) close(fd);
    const char *mkfs[] = {"mkfs.ext4", "-q", "-F", img, NULL};
    const char *mnt[] = {"mount", "-o", "loop,errors=remount-ro", img, dir, NULL};
    if (!sized) snprintf(why, sizeof why, "cannot create %s", img);
    else if (cmd(mkfs) != 0) snprintf(why, sizeof why, "mkfs.ext4 failed (e2fsprogs missing?)");
    else if (cmd(mnt) != 0)
        snprintf(why, sizeof why, "cannot mount an ext4 image (no loop devices?)");
    else return NULL;
    return why;
}

/* The disk under dir fails: its journal is committed (what was written so far is on
 * the disk), then ext4 records an error and turns the filesystem read-only, as it
 * does when the device fails. 0, or -1. */
static int ext4_fail(const char *dir) {
    struct stat sb;
    char link[PATH_MAX] = "", sys[PATH_MAX + 64];
    if (stat(dir, &sb) != 0) return -1;
    snprintf(sys, sizeof sys, "/sys/dev/block/%u:%u", major(sb.st_dev), minor(sb.st_dev));
    ssize_t n = readlink(sys, link, sizeof link - 1);
    if (n <= 0) return -1;
    link[n] = '\0';
    const char *dev = strrchr(link, '/') ? strrchr(link, '/') + 1 : link;
    int d = open(dir, O_RDONLY);
    int synced = d >= 0 && syncfs(d) == 0;
    if (d >= 0) close(d);
    snprintf(sys, sizeof sys, "/sys/fs/ext4/%s/trigger_fs_error", dev);
    int fd = open(sys, O_WRONLY);
    int ok = synced && fd >= 0 && write(fd, "feedline test\n", 14) == 14;
    if (fd >= 0) close(fd);
    return ok ? 0 : -1;
}

/* ------------------------------------------------------------------ cases */

/* A case on a tmpfs of its own: the dataset, its offline reference run, and the
 * dataset imported into MNT/feedline.db. */
typedef struct tmpfs_case {
    char *dir, *file, *ref, *mnt, *db;
    const char *why; /* why there is no tmpfs (MNT is then a plain directory), or NULL */
} tmpfs_case;

static int tmpfs_case_start(tmpfs_case *c, const char *size) {
    memset(c, 0, sizeof *c);
    c->dir = fx_tmpdir();
    c->file = ds_write_jsonl(c->dir, DATASET, SEED);
    c->mnt = xasprintf("%s/fs", c->dir);
    c->db = xasprintf("%s/fs/feedline.db", c->dir);
    if (!c->file || !(c->ref = reference(c->dir, c->file, NULL)) || mkdir(c->mnt, 0755) != 0)
        return -1;
    c->why = private_mounts();
    if (!c->why) c->why = mount_tmpfs(c->mnt, size);
    return import_into(c->db, c->file);
}

static void tmpfs_case_free(tmpfs_case *c) {
    if (!c->why) umount2(c->mnt, MNT_DETACH);
    free(c->file);
    free(c->ref);
    free(c->mnt);
    free(c->db);
    fx_rmtree(c->dir);
    free(c->dir);
}

/* How a file is made read-only for root too (root ignores permissions). */
enum ro_mech { RO_NONE, RO_REMOUNT, RO_IMMUTABLE, RO_CHMOD };

static enum ro_mech make_read_only(const char *mnt, const char *db, int mounted) {
    const char *chattr[] = {"chattr", "+i", db, mnt, NULL};
    if (mounted) return mount("tmpfs", mnt, "tmpfs", MS_REMOUNT | MS_RDONLY, "size=16m") == 0
                            ? RO_REMOUNT : RO_NONE;
    if (cmd(chattr) == 0) return RO_IMMUTABLE;
    if (geteuid() != 0 && chmod(db, 0444) == 0 && chmod(mnt, 0555) == 0) return RO_CHMOD;
    return RO_NONE;
}

static int make_writable(const char *mnt, const char *db, enum ro_mech m) {
    const char *chattr[] = {"chattr", "-i", db, mnt, NULL};
    switch (m) {
    case RO_REMOUNT: return mount("tmpfs", mnt, "tmpfs", MS_REMOUNT, "size=16m");
    case RO_IMMUTABLE: return cmd(chattr);
    case RO_CHMOD: return chmod(db, 0644) || chmod(mnt, 0755);
    default: return 0;
    }
}

TEST(a_database_on_a_read_only_filesystem_is_refused_clearly_and_left_unchanged) {
    if (!sqlite_pass(__func__)) return;
    tmpfs_case c;
    REQUIRE(tmpfs_case_start(&c, "16m") == 0);
    enum ro_mech mech = make_read_only(c.mnt, c.db, !c.why);
    static const char *const MECH[] = {"", "tmpfs remounted read-only",
                                       "chattr +i on the file and its directory",
                                       "chmod 0444 file, 0555 directory"};
    static const char *const CAUSE[] = {"", "Read-only file system", "Operation not permitted",
                                        "Permission denied"};
    if (mech == RO_NONE) {
        skip(__func__, "no read-only mechanism that stops root here (no mount rights, no chattr)");
    } else {
        fprintf(stdout, "    mechanism: %s\n", MECH[mech]);
        size_t len0, len1;
        char *before = slurp(c.db, &len0);
        char *err = NULL;
        int64_t t0 = mono_ms();
        int rc = feedline_run(c.db, NULL, 0, NULL, &err);
        int64_t ms = mono_ms() - t0;
        char *line = line_with(err, c.db);
        fprintf(stdout, "    exit %d after %lld ms: %s\n", rc, (long long)ms, line);
        CHECK_INT(rc, 1);
        CHECK(strstr(line, CAUSE[mech]) != NULL);
        char *after = slurp(c.db, &len1);
        CHECK(len1 == len0 && memcmp(before, after, len0) == 0); /* nothing changed */
        char *wal = xasprintf("%s-wal", c.db);
        CHECK(access(wal, F_OK) != 0);
        /* Writable again: the file is intact and a run ends like the reference. */
        CHECK_INT(make_writable(c.mnt, c.db, mech), 0);
        check_recovers(c.ref, c.db, NULL);
        free(wal);
        free(line);
        free(err);
        free(before);
        free(after);
    }
    tmpfs_case_free(&c);
}

TEST(a_filesystem_turning_read_only_mid_run_fails_the_run_clearly_and_it_resumes) {
    if (!sqlite_pass(__func__)) return;
    char *dir = fx_tmpdir();
    char *file = ds_write_jsonl(dir, DATASET, SEED);
    REQUIRE(file != NULL);
    char *mnt = xasprintf("%s/disk", dir), *img = xasprintf("%s/disk.img", dir);
    char *db = xasprintf("%s/disk/feedline.db", dir), *log = xasprintf("%s/run.log", dir);
    REQUIRE(mkdir(mnt, 0755) == 0);
    const char *why = private_mounts();
    if (!why) why = mount_ext4(img, mnt);
    if (why) {
        char *msg = xasprintf("needs an ext4 image mounted through a loop device: %s", why);
        skip(__func__, msg);
        free(msg);
    } else {
        fprintf(stdout, "    mechanism: ext4 image on a loop device, errors=remount-ro, "
                        "/sys/fs/ext4/DEV/trigger_fs_error\n");
        fakeproc fp;
        REQUIRE(e2e_start_fake(&fp, NULL) == 0);
        char *ref = reference(dir, file, &fp);
        REQUIRE(ref != NULL);
        REQUIRE(import_into(db, file) == 0);
        REQUIRE(fake_latency(&fp, SLOW_MS) == 0);
        pid_t run = feedline_bg(db, &fp, NULL, log);
        REQUIRE(run > 0);
        REQUIRE(wait_progress(db, run) == 0);
        int64_t t0 = mono_ms();
        CHECK_INT(ext4_fail(mnt), 0);
        int rc = fakeproc_wait(run, RUN_TIMEOUT_MS);
        int64_t ms = mono_ms() - t0;
        char *text = slurp(log, NULL);
        char *line = line_with(text, "run 1 failed: ");
        fprintf(stdout, "    exit %d %lld ms after the fault: %s\n", rc, (long long)ms, line);
        CHECK_INT(rc, 1);
        CHECK(strstr(line, "Read-only file system") != NULL && strstr(line, db) != NULL);
        /* The administrator's part: unmount, check the filesystem, mount it again. */
        CHECK_INT(umount2(mnt, 0), 0);
        const char *fsck[] = {"e2fsck", "-fy", img, NULL};
        int frc = cmd_ok(fsck, 1);
        CHECK(frc == 0 || frc == 1); /* 1: errors corrected */
        const char *again[] = {"mount", "-o", "loop,errors=remount-ro", img, mnt, NULL};
        REQUIRE(cmd(again) == 0);
        REQUIRE(fake_latency(&fp, "0") == 0);
        check_recovers(ref, db, &fp);
        CHECK_INT(fakeproc_stop(&fp), 0);
        free(text);
        free(line);
        free(ref);
        umount2(mnt, MNT_DETACH);
    }
    free(mnt);
    free(img);
    free(db);
    free(log);
    free(file);
    fx_rmtree(dir);
    free(dir);
}

/* Fills the filesystem of dir with DIR/filler, leaving about room bytes. 0, or -1. */
static int fill(const char *dir, long room) {
    struct statvfs v;
    if (statvfs(dir, &v) != 0) return -1;
    long long size = (long long)v.f_bavail * (long long)v.f_frsize - room;
    char *path = xasprintf("%s/filler", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    free(path);
    if (fd < 0) return -1;
    char block[65536];
    memset(block, 'x', sizeof block);
    long long done = 0;
    while (done < size) {
        ssize_t n = write(fd, block, size - done < (long long)sizeof block ? (size_t)(size - done)
                                                                           : sizeof block);
        if (n <= 0) break;
        done += n;
    }
    return close(fd) == 0 && done >= size ? 0 : -1;
}

TEST(a_full_disk_fails_the_run_clearly_and_after_freeing_space_the_resume_ends_like_one_run) {
    if (!sqlite_pass(__func__)) return;
    tmpfs_case c;
    REQUIRE(tmpfs_case_start(&c, "8m") == 0);
    /* Room for the run to start, not for its results. */
    const long room = 192 * 1024;
    const char *cause = "database or disk is full";
    char *err = NULL;
    int64_t t0 = mono_ms();
    int rc;
    if (!c.why) {
        fprintf(stdout, "    mechanism: 8 MB tmpfs, a filler file leaving %ld KB\n", room / 1024);
        REQUIRE(fill(c.mnt, room) == 0);
        rc = feedline_run(c.db, NULL, 0, NULL, &err);
    } else {
        /* Without mount rights: the run may not grow its files past a limit; it is
         * told so by EFBIG (SIGXFSZ ignored, which the child inherits). */
        fprintf(stdout, "    mechanism: RLIMIT_FSIZE of %ld KB over the database (%s)\n",
                room / 1024, c.why);
        struct stat sb;
        struct rlimit old, lim;
        REQUIRE(stat(c.db, &sb) == 0 && getrlimit(RLIMIT_FSIZE, &old) == 0);
        lim = old;
        lim.rlim_cur = (rlim_t)sb.st_size + (rlim_t)room;
        REQUIRE(signal(SIGXFSZ, SIG_IGN) != SIG_ERR);
        REQUIRE(setrlimit(RLIMIT_FSIZE, &lim) == 0);
        rc = feedline_run(c.db, NULL, 0, NULL, &err);
        REQUIRE(setrlimit(RLIMIT_FSIZE, &old) == 0);
        REQUIRE(signal(SIGXFSZ, SIG_DFL) != SIG_ERR);
        cause = "File too large";
    }
    int64_t ms = mono_ms() - t0;
    char *line = line_with(err, "run 1 failed: ");
    fprintf(stdout, "    exit %d after %lld ms: %s\n", rc, (long long)ms, line);
    CHECK_INT(rc, 1);
    CHECK(strstr(line, cause) != NULL && strstr(line, c.db) != NULL);
    if (!c.why) {
        char *filler = xasprintf("%s/filler", c.mnt);
        CHECK_INT(unlink(filler), 0); /* space freed */
        free(filler);
    }
    check_recovers(c.ref, c.db, NULL);
    free(line);
    free(err);
    tmpfs_case_free(&c);
}

/* ------------------------------------------------------------------ another writer */

/* Another process's write transaction on db (this test's own connection): BEGIN
 * IMMEDIATE and an insert, not committed. NULL on failure. */
static sqlite3 *hold_write_lock(const char *db) {
    sqlite3 *h = NULL;
    char *msg = NULL;
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
        sqlite3_busy_timeout(h, 30000) != SQLITE_OK ||
        sqlite3_exec(h, "BEGIN IMMEDIATE; INSERT INTO sync_state (key, value, updated_at)"
                        " VALUES ('held by test_faults', 'x', 0)", NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stdout, "    taking the write lock: %s\n", msg ? msg : sqlite3_errmsg(h));
        sqlite3_free(msg);
        sqlite3_close(h);
        return NULL;
    }
    return h;
}

static int release_write_lock(sqlite3 *h) {
    int rc = sqlite3_exec(h, "ROLLBACK", NULL, NULL, NULL);
    return sqlite3_close(h) == SQLITE_OK && rc == SQLITE_OK ? 0 : -1;
}

/* A run against a fake endpoint, disturbed by another writer once it has made
 * progress; the reference run over the same data. */
typedef struct writer_case {
    char *dir, *file, *ref, *db, *log;
    fakeproc fp;
    pid_t run;
} writer_case;

/* Starts the run (extra_env: one more "K=V" or NULL) and waits for its progress. 0, or
 * -1. */
static int writer_case_start(writer_case *c, const char *extra_env) {
    memset(c, 0, sizeof *c);
    c->dir = fx_tmpdir();
    c->file = ds_write_jsonl(c->dir, DATASET, SEED);
    c->db = xasprintf("%s/feedline.db", c->dir);
    c->log = xasprintf("%s/run.log", c->dir);
    if (!c->file || e2e_start_fake(&c->fp, NULL) != 0) return -1;
    c->ref = reference(c->dir, c->file, &c->fp);
    if (!c->ref || import_into(c->db, c->file) != 0 || fake_latency(&c->fp, SLOW_MS) != 0)
        return -1;
    c->run = feedline_bg(c->db, &c->fp, extra_env, c->log);
    return c->run > 0 ? wait_progress(c->db, c->run) : -1;
}

static void writer_case_free(writer_case *c) {
    CHECK_INT(fakeproc_stop(&c->fp), 0);
    free(c->file);
    free(c->ref);
    free(c->db);
    free(c->log);
    fx_rmtree(c->dir);
    free(c->dir);
}

/* Done items of run 1, read by the lock holder's connection. */
static int64_t done_items(sqlite3 *h) {
    sqlite3_stmt *st = NULL;
    int64_t n = -1;
    if (sqlite3_prepare_v2(h, "SELECT COUNT(*) FROM work_items WHERE run_id = 1 AND state = 'done'",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

#define BRIEF_HOLD_MS 1500

TEST(another_writer_holding_the_lock_briefly_delays_the_run_which_completes_like_one_run) {
    if (!sqlite_pass(__func__)) return;
    writer_case c;
    REQUIRE(writer_case_start(&c, NULL) == 0);
    sqlite3 *h = hold_write_lock(c.db);
    REQUIRE(h != NULL);
    int64_t t0 = mono_ms(), done = done_items(h);
    /* While the lock is held the run can write nothing; it waits (busy timeout 10 s,
     * then its retries) and is still running when the lock goes. */
    while (mono_ms() - t0 < BRIEF_HOLD_MS) sleep_ms(50);
    CHECK_INT(fakeproc_wait(c.run, 0), -2); /* still running */
    CHECK(done > 0);                         /* mid-run */
    CHECK_INT(release_write_lock(h), 0);
    int64_t held = mono_ms() - t0;
    int rc = fakeproc_wait(c.run, RUN_TIMEOUT_MS);
    fprintf(stdout, "    lock held %lld ms (%lld items done then); the run exited %d %lld ms "
                    "after the release\n", (long long)held, (long long)done, rc,
            (long long)(mono_ms() - t0 - held));
    CHECK_INT(rc, 0);
    CHECK(intact(c.db));
    outcome_check_same(c.ref, 1, c.db, 1);
    writer_case_free(&c);
}

/* The run's lock wait, lowered so that the run gives up within seconds (its results
 * are retried 40 times, each after the wait). */
#define SHORT_BUSY "FEEDLINE_SQLITE_BUSY_MS=20"

TEST(another_writer_holding_the_lock_past_the_timeouts_fails_the_run_clearly_and_it_resumes) {
    if (!sqlite_pass(__func__)) return;
    writer_case c;
    REQUIRE(writer_case_start(&c, SHORT_BUSY) == 0);
    sqlite3 *h = hold_write_lock(c.db);
    REQUIRE(h != NULL);
    int64_t t0 = mono_ms(), before = fakeproc_stat_int(&c.fp, "requests");
    /* Held until the run gives up: released once its process has exited. */
    int rc = fakeproc_wait(c.run, RUN_TIMEOUT_MS);
    int64_t ms = mono_ms() - t0, sent = fakeproc_stat_int(&c.fp, "requests") - before;
    CHECK_INT(release_write_lock(h), 0);
    char *text = slurp(c.log, NULL);
    char *line = line_with(text, "run 1 failed: ");
    fprintf(stdout, "    exit %d %lld ms after the lock was taken, %lld requests sent meanwhile: "
                    "%s\n", rc, (long long)ms, (long long)sent, line);
    CHECK_INT(rc, 1);
    /* A run that cannot write stops paying: its claims fail on the lock too, so once
     * its ready items are asked nothing new starts, and what is answered meanwhile
     * cannot be stored (the resume asks again). At most what was in flight or queued
     * (concurrency 4, 1 queued), their second stages, and one claim batch (32) of
     * ready items; 10 in the runs seen. */
    CHECK(sent <= 2 * 5 + 32);
    CHECK(strstr(line, "database is locked") != NULL && strstr(line, c.db) != NULL);
    CHECK_INT(fake_latency(&c.fp, "0"), 0);
    check_recovers(c.ref, c.db, &c.fp);
    free(text);
    free(line);
    writer_case_free(&c);
}
