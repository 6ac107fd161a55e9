// A thin RAII wrapper over the SQLite C API (DESIGN §2 `sqlite`): one Database
// per connection, Statement per prepared statement, Transaction per scope.
#pragma once

#include <sqlite3.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "libmail/result.hpp"

namespace facteur::sqlite {

// A prepared statement. Binding indexes are 1-based and column indexes
// 0-based, as in the C API. A failed bind is remembered and reported by the
// next step()/run(), so call sites can chain binds without checking each.
class Statement {
public:
    Statement() = default;
    ~Statement();
    Statement(Statement&& other) noexcept;
    Statement& operator=(Statement&& other) noexcept;
    Statement(const Statement&) = delete;
    Statement& operator=(const Statement&) = delete;

    Statement& bind(int index, int64_t value);
    Statement& bind(int index, std::string_view text);  // copied (SQLITE_TRANSIENT)
    Statement& bind(int index, std::nullptr_t);
    Statement& bind_blob(int index, std::string_view bytes);  // binary-safe, copied
    // Guards against bind(i, "literal") or bind(i, 1) resolving to an
    // unexpected overload.
    Statement& bind(int index, const char* text) { return bind(index, std::string_view(text)); }
    Statement& bind(int index, int value) { return bind(index, static_cast<int64_t>(value)); }

    // true: a row is available; false: the statement is done. SQLITE_BUSY
    // (after the busy timeout) and constraint violations are errors.
    Result<bool> step();
    // Steps to completion, discarding rows.
    Status run();

    int64_t column_int64(int column) const;
    std::string column_text(int column) const;  // binary-safe (uses column_bytes)
    bool column_is_null(int column) const;
    int column_count() const;

    // Back to the start so it can be stepped again; keeps bindings.
    void reset();
    void clear_bindings();

    sqlite3_stmt* handle() const { return statement_; }

private:
    friend class Database;
    Statement(sqlite3_stmt* statement, sqlite3* database) : statement_(statement), database_(database) {}
    void check_column(int column) const;
    void note_bind(int rc, int index);

    sqlite3_stmt* statement_ = nullptr;  // owned; finalized in the destructor
    sqlite3* database_ = nullptr;        // not owned: for error messages
    std::string bind_error_;
};

enum class Mode { read_only, read_write, read_write_create };

class Database {
public:
    static constexpr std::chrono::milliseconds default_busy_timeout{5000};

    // Writable modes switch the file to WAL (readers never block the writer)
    // with synchronous=NORMAL; every connection gets foreign_keys=ON and the
    // busy timeout.
    static Result<Database> open(const std::string& path, Mode mode);

    Database() = default;
    ~Database();
    Database(Database&& other) noexcept;
    Database& operator=(Database&& other) noexcept;
    Database(const Database&) = delete;
    Database& operator=(const Database&) = delete;

    Status set_busy_timeout(std::chrono::milliseconds timeout);

    // One or more statements, no rows expected (schema, PRAGMA, BEGIN).
    Status exec(std::string_view sql);
    Result<Statement> prepare(std::string_view sql);

    int64_t last_insert_rowid() const;
    int changes() const;
    sqlite3* handle() { return database_; }
    std::string error_message() const;
    bool is_open() const { return database_ != nullptr; }
    const std::string& path() const { return path_; }

private:
    explicit Database(sqlite3* database, std::string path) : database_(database), path_(std::move(path)) {}
    void close();

    sqlite3* database_ = nullptr;  // owned; closed in the destructor
    std::string path_;
};

class Transaction {
public:
    // immediate takes the write lock at BEGIN, so a read-then-write
    // transaction cannot fail half-way with SQLITE_BUSY (a deferred one can).
    enum class Kind { immediate, deferred };

    explicit Transaction(Database& database, Kind kind = Kind::immediate);
    ~Transaction();  // rolls back unless committed
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;

    Status begin_status() const { return begin_; }
    Status commit();
    Status rollback();

private:
    Database& database_;
    Status begin_;
    bool active_ = false;
};

}  // namespace facteur::sqlite
