// Tests for libmail/sqlite: the RAII wrapper over SQLite (open modes, binding,
// transactions, read-only refusal, busy timeout between two connections).
#include <catch2/catch.hpp>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "tests/unit/test_support.hpp"
#include "libmail/sqlite.hpp"

using namespace facteur;
using test::TempDir;
using namespace std::chrono_literals;

namespace {

sqlite::Database open_or_fail(const std::string& path, sqlite::Mode mode) {
    auto database = sqlite::Database::open(path, mode);
    INFO((database ? std::string() : database.error()));
    REQUIRE(database.ok());
    return std::move(*database);
}

int64_t count_rows(sqlite::Database& database, const char* table) {
    auto query = database.prepare(std::string("SELECT count(*) FROM ") + table);
    REQUIRE(query.ok());
    auto row = query->step();
    REQUIRE(row.ok());
    REQUIRE(*row);
    return query->column_int64(0);
}

std::string pragma_text(sqlite::Database& database, const char* pragma) {
    auto query = database.prepare(std::string("PRAGMA ") + pragma);
    REQUIRE(query.ok());
    auto row = query->step();
    REQUIRE(row.ok());
    REQUIRE(*row);
    return query->column_text(0);
}

}  // namespace

TEST_CASE("open creates a WAL database with foreign keys on", "[sqlite]") {
    TempDir dir;
    auto database = open_or_fail(dir.file("a.db"), sqlite::Mode::read_write_create);
    CHECK(pragma_text(database, "journal_mode") == "wal");
    CHECK(pragma_text(database, "foreign_keys") == "1");
    CHECK(pragma_text(database, "synchronous") == "1");  // NORMAL
    CHECK(pragma_text(database, "busy_timeout") == "5000");
    CHECK(database.is_open());
    CHECK(database.path() == dir.file("a.db"));
}

TEST_CASE("open without create refuses a missing file", "[sqlite]") {
    TempDir dir;
    for (auto mode : {sqlite::Mode::read_only, sqlite::Mode::read_write}) {
        auto database = sqlite::Database::open(dir.file("missing.db"), mode);
        REQUIRE_FALSE(database.ok());
        CHECK_THAT(database.error(), Catch::Contains("cannot open database") && Catch::Contains("missing.db"));
    }
}

TEST_CASE("open refuses a file that is not a database", "[sqlite]") {
    TempDir dir;
    std::string path = dir.file("junk.db");
    {
        FILE* file = fopen(path.c_str(), "w");
        REQUIRE(file != nullptr);
        fputs("this is definitely not an SQLite database file, just some text padding it out\n", file);
        fclose(file);
    }
    auto database = sqlite::Database::open(path, sqlite::Mode::read_write);
    REQUIRE_FALSE(database.ok());
    CHECK_THAT(database.error(), Catch::Contains("not a database"));
}

TEST_CASE("create, insert, select", "[sqlite]") {
    TempDir dir;
    auto database = open_or_fail(dir.file("a.db"), sqlite::Mode::read_write_create);
    REQUIRE(database.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, n INTEGER, data BLOB);"
                          "CREATE INDEX t_name ON t (name);")
                .ok());

    auto insert = database.prepare("INSERT INTO t (name, n, data) VALUES (?1, ?2, ?3)");
    REQUIRE(insert.ok());
    REQUIRE(insert->bind(1, "alice").bind(2, int64_t{42}).bind(3, nullptr).run().ok());
    CHECK(database.last_insert_rowid() == 1);
    CHECK(database.changes() == 1);
    // run() resets, so the statement is reusable with new bindings.
    REQUIRE(insert->bind(1, std::string_view("bob")).bind(2, int64_t{-7}).bind(3, nullptr).run().ok());
    CHECK(database.last_insert_rowid() == 2);
    REQUIRE(insert->bind(1, "").bind(2, int64_t{INT64_MAX}).bind(3, nullptr).run().ok());

    auto select = database.prepare("SELECT id, name, n, data FROM t ORDER BY id");
    REQUIRE(select.ok());
    CHECK(select->column_count() == 4);
    auto row = select->step();
    REQUIRE(row.ok());
    REQUIRE(*row);
    CHECK(select->column_int64(0) == 1);
    CHECK(select->column_text(1) == "alice");
    CHECK(select->column_int64(2) == 42);
    CHECK(select->column_is_null(3));
    CHECK_FALSE(select->column_is_null(1));
    REQUIRE(*select->step());
    CHECK(select->column_text(1) == "bob");
    CHECK(select->column_int64(2) == -7);
    REQUIRE(*select->step());
    // An empty string is '' (not NULL), even though string_view("").data() may be anything.
    CHECK_FALSE(select->column_is_null(1));
    CHECK(select->column_text(1).empty());
    CHECK(select->column_int64(2) == INT64_MAX);
    auto done = select->step();
    REQUIRE(done.ok());
    CHECK_FALSE(*done);

    // reset() rewinds the statement.
    select->reset();
    REQUIRE(*select->step());
    CHECK(select->column_text(1) == "alice");
    select->reset();

    // Empty string_view with a null data() pointer is still '' (not NULL).
    auto empty = database.prepare("SELECT ?1 IS NULL, length(?1)");
    REQUIRE(empty.ok());
    REQUIRE(*empty->bind(1, std::string_view()).step());
    CHECK(empty->column_int64(0) == 0);
    CHECK(empty->column_int64(1) == 0);
}

TEST_CASE("blobs and text keep embedded NUL bytes", "[sqlite]") {
    TempDir dir;
    auto database = open_or_fail(dir.file("a.db"), sqlite::Mode::read_write_create);
    REQUIRE(database.exec("CREATE TABLE t (data BLOB, text TEXT)").ok());
    const std::string bytes("a\0b\0\xff\x01z", 7);
    auto insert = database.prepare("INSERT INTO t VALUES (?1, ?2)");
    REQUIRE(insert.ok());
    REQUIRE(insert->bind_blob(1, bytes).bind(2, std::string_view(bytes)).run().ok());
    REQUIRE(insert->bind_blob(1, std::string_view()).bind(2, nullptr).run().ok());

    auto select = database.prepare("SELECT data, length(data), typeof(data), text FROM t ORDER BY rowid");
    REQUIRE(select.ok());
    REQUIRE(*select->step());
    CHECK(select->column_text(0) == bytes);
    CHECK(select->column_int64(1) == 7);
    CHECK(select->column_text(2) == "blob");
    CHECK(select->column_text(3) == bytes);
    REQUIRE(*select->step());
    // An empty blob is a zero-length blob, not NULL.
    CHECK_FALSE(select->column_is_null(0));
    CHECK(select->column_text(2) == "blob");
    CHECK(select->column_text(0).empty());
    CHECK(select->column_is_null(3));
    CHECK(select->column_text(3).empty());
}

TEST_CASE("prepare and step report SQL errors", "[sqlite]") {
    TempDir dir;
    auto database = open_or_fail(dir.file("a.db"), sqlite::Mode::read_write_create);
    REQUIRE(database.exec("CREATE TABLE t (name TEXT UNIQUE NOT NULL)").ok());

    auto bad = database.prepare("SELEKT 1");
    REQUIRE_FALSE(bad.ok());
    CHECK_THAT(bad.error(), Catch::Contains("syntax error"));
    CHECK_THAT(database.error_message(), Catch::Contains("syntax error"));

    auto missing = database.prepare("SELECT * FROM nowhere");
    REQUIRE_FALSE(missing.ok());
    CHECK_THAT(missing.error(), Catch::Contains("no such table: nowhere"));

    auto two = database.prepare("SELECT 1; SELECT 2");
    REQUIRE_FALSE(two.ok());
    CHECK_THAT(two.error(), Catch::Contains("one SQL statement"));
    // A trailing semicolon and comment are fine.
    CHECK(database.prepare("SELECT 1; -- done\n").ok());
    CHECK(database.prepare("SELECT 1 /* c */ ;").ok());

    auto empty = database.prepare("  -- nothing\n");
    REQUIRE_FALSE(empty.ok());
    CHECK_THAT(empty.error(), Catch::Contains("empty"));

    auto insert = database.prepare("INSERT INTO t VALUES (?1)");
    REQUIRE(insert.ok());
    REQUIRE(insert->bind(1, "x").run().ok());
    auto duplicate = insert->bind(1, "x").run();
    REQUIRE_FALSE(duplicate.ok());
    CHECK_THAT(duplicate.error(), Catch::Contains("UNIQUE constraint failed"));
    // The statement is usable again after an error.
    CHECK(insert->bind(1, "y").run().ok());

    auto null_value = insert->bind(1, nullptr).run();
    REQUIRE_FALSE(null_value.ok());
    CHECK_THAT(null_value.error(), Catch::Contains("NOT NULL"));

    // A bind to a parameter that does not exist is reported by the next step.
    auto out_of_range = insert->bind(5, "z").run();
    REQUIRE_FALSE(out_of_range.ok());
    CHECK_THAT(out_of_range.error(), Catch::Contains("cannot bind parameter 5"));
    insert->clear_bindings();
    CHECK(insert->bind(1, "z").run().ok());
    CHECK(count_rows(database, "t") == 3);

    auto exec_error = database.exec("INSERT INTO nowhere VALUES (1)");
    REQUIRE_FALSE(exec_error.ok());
    CHECK_THAT(exec_error.error(), Catch::Contains("no such table"));
}

TEST_CASE("foreign keys are enforced", "[sqlite]") {
    TempDir dir;
    auto database = open_or_fail(dir.file("a.db"), sqlite::Mode::read_write_create);
    REQUIRE(database.exec("CREATE TABLE parent (name TEXT PRIMARY KEY);"
                          "CREATE TABLE child (parent TEXT REFERENCES parent(name));")
                .ok());
    auto orphan = database.exec("INSERT INTO child VALUES ('nobody')");
    REQUIRE_FALSE(orphan.ok());
    CHECK_THAT(orphan.error(), Catch::Contains("FOREIGN KEY"));
}

TEST_CASE("a transaction rolls back on scope exit unless committed", "[sqlite]") {
    TempDir dir;
    auto database = open_or_fail(dir.file("a.db"), sqlite::Mode::read_write_create);
    REQUIRE(database.exec("CREATE TABLE t (n INTEGER)").ok());

    {
        sqlite::Transaction transaction(database);
        REQUIRE(transaction.begin_status().ok());
        REQUIRE(database.exec("INSERT INTO t VALUES (1)").ok());
        CHECK(count_rows(database, "t") == 1);
    }
    CHECK(count_rows(database, "t") == 0);

    {
        sqlite::Transaction transaction(database, sqlite::Transaction::Kind::deferred);
        REQUIRE(transaction.begin_status().ok());
        REQUIRE(database.exec("INSERT INTO t VALUES (2)").ok());
        REQUIRE(transaction.commit().ok());
        auto again = transaction.commit();
        REQUIRE_FALSE(again.ok());
        CHECK_THAT(again.error(), Catch::Contains("already finished"));
    }
    CHECK(count_rows(database, "t") == 1);

    {
        sqlite::Transaction transaction(database);
        REQUIRE(database.exec("INSERT INTO t VALUES (3)").ok());
        REQUIRE(transaction.rollback().ok());
    }
    CHECK(count_rows(database, "t") == 1);

    // A nested BEGIN fails and says so; the outer transaction is untouched.
    {
        sqlite::Transaction outer(database);
        REQUIRE(outer.begin_status().ok());
        REQUIRE(database.exec("INSERT INTO t VALUES (4)").ok());
        {
            sqlite::Transaction inner(database);
            REQUIRE_FALSE(inner.begin_status().ok());
            CHECK_THAT(inner.begin_status().error(), Catch::Contains("within a transaction"));
            CHECK_FALSE(inner.commit().ok());
        }
        REQUIRE(outer.commit().ok());
    }
    CHECK(count_rows(database, "t") == 2);
}

TEST_CASE("read_only refuses writes", "[sqlite]") {
    TempDir dir;
    std::string path = dir.file("a.db");
    {
        auto writer = open_or_fail(path, sqlite::Mode::read_write_create);
        REQUIRE(writer.exec("CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (1);").ok());
    }
    auto reader = open_or_fail(path, sqlite::Mode::read_only);
    CHECK(count_rows(reader, "t") == 1);
    auto write = reader.exec("INSERT INTO t VALUES (2)");
    REQUIRE_FALSE(write.ok());
    CHECK_THAT(write.error(), Catch::Contains("readonly"));
    {
        sqlite::Transaction transaction(reader);
        auto in_transaction = reader.exec("DELETE FROM t");
        REQUIRE_FALSE(in_transaction.ok());
        CHECK_THAT(in_transaction.error(), Catch::Contains("readonly"));
    }
    auto statement = reader.prepare("UPDATE t SET n = 5");
    REQUIRE(statement.ok());
    auto update = statement->run();
    REQUIRE_FALSE(update.ok());
    CHECK_THAT(update.error(), Catch::Contains("readonly"));
    CHECK(count_rows(reader, "t") == 1);
}

TEST_CASE("two connections: readers see commits, writers wait out the busy timeout", "[sqlite]") {
    TempDir dir;
    std::string path = dir.file("a.db");
    auto first = open_or_fail(path, sqlite::Mode::read_write_create);
    REQUIRE(first.exec("CREATE TABLE t (n INTEGER)").ok());
    auto second = open_or_fail(path, sqlite::Mode::read_write);
    REQUIRE(second.set_busy_timeout(200ms).ok());

    sqlite::Transaction holding(first);
    REQUIRE(holding.begin_status().ok());
    REQUIRE(first.exec("INSERT INTO t VALUES (1)").ok());

    // WAL: a reader is not blocked by the writer and sees the last commit.
    CHECK(count_rows(second, "t") == 0);

    auto started = std::chrono::steady_clock::now();
    sqlite::Transaction blocked(second);
    auto waited = std::chrono::steady_clock::now() - started;
    REQUIRE_FALSE(blocked.begin_status().ok());
    CHECK_THAT(blocked.begin_status().error(), Catch::Contains("locked"));
    CHECK(waited >= 150ms);  // it did wait (about) the timeout before giving up
    CHECK(waited < 5s);

    auto write = second.exec("INSERT INTO t VALUES (2)");
    REQUIRE_FALSE(write.ok());
    CHECK_THAT(write.error(), Catch::Contains("locked"));

    // A step that hits the lock is an error, not a hang or a crash.
    auto insert = second.prepare("INSERT INTO t VALUES (3)");
    REQUIRE(insert.ok());
    auto busy = insert->step();
    REQUIRE_FALSE(busy.ok());
    CHECK_THAT(busy.error(), Catch::Contains("locked"));

    REQUIRE(holding.commit().ok());
    CHECK(count_rows(second, "t") == 1);
    // Once the lock is released the same statement goes through.
    CHECK(insert->run().ok());
    CHECK(count_rows(first, "t") == 2);
}

TEST_CASE("Database and Statement are movable", "[sqlite]") {
    TempDir dir;
    auto database = open_or_fail(dir.file("a.db"), sqlite::Mode::read_write_create);
    sqlite::Database moved = std::move(database);
    CHECK(moved.is_open());
    CHECK_FALSE(database.is_open());  // NOLINT(bugprone-use-after-move): checking the moved-from state
    CHECK(database.error_message() == "database is not open");
    REQUIRE(moved.exec("CREATE TABLE t (n INTEGER)").ok());

    auto statement = moved.prepare("INSERT INTO t VALUES (?1)");
    REQUIRE(statement.ok());
    sqlite::Statement owner = std::move(*statement);
    REQUIRE(owner.bind(1, 5).run().ok());
    sqlite::Statement other;
    other = std::move(owner);
    REQUIRE(other.bind(1, 6).run().ok());
    CHECK(count_rows(moved, "t") == 2);

    // Move-assigning over an open database closes the old one first.
    auto replacement = open_or_fail(dir.file("b.db"), sqlite::Mode::read_write_create);
    moved = std::move(replacement);
    CHECK(moved.path() == dir.file("b.db"));
    // A statement may outlive its database: close_v2 keeps the connection
    // until the statement is finalized, so this is not a use-after-free.
    {
        auto db = open_or_fail(dir.file("c.db"), sqlite::Mode::read_write_create);
        auto kept = db.prepare("SELECT 1");
        REQUIRE(kept.ok());
        other = std::move(*kept);
    }
    auto row = other.step();
    REQUIRE(row.ok());
    CHECK(*row);
    CHECK(other.column_int64(0) == 1);
}

TEST_CASE("WAL files follow the database file's mode", "[sqlite]") {
    TempDir dir;
    std::string path = dir.file("private.db");
    {
        FILE* file = fopen(path.c_str(), "w");
        REQUIRE(file != nullptr);
        fclose(file);
        REQUIRE(chmod(path.c_str(), 0600) == 0);
    }
    auto database = open_or_fail(path, sqlite::Mode::read_write);
    REQUIRE(database.exec("CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (1);").ok());
    struct stat info {};
    REQUIRE(stat((path + "-wal").c_str(), &info) == 0);
    CHECK((info.st_mode & 0777) == 0600);
}
