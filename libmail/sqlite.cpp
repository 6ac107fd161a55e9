// A thin RAII wrapper over the SQLite C API: connections, prepared statements
// and transactions, with SQLite's error text carried into Result errors.
#include "libmail/sqlite.hpp"

#include <fmt/format.h>

#include <climits>
#include <utility>

#include "libmail/panic.hpp"

namespace facteur::sqlite {

namespace {

// Only whitespace and SQL comments may follow the one statement given to
// prepare(): anything else would be silently ignored by SQLite.
bool only_trivia(std::string_view rest) {
    size_t i = 0;
    while (i < rest.size()) {
        char c = rest[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' || c == ';') {
            ++i;
        } else if (rest.substr(i, 2) == "--") {
            size_t end = rest.find('\n', i);
            i = end == std::string_view::npos ? rest.size() : end + 1;
        } else if (rest.substr(i, 2) == "/*") {
            size_t end = rest.find("*/", i + 2);
            if (end == std::string_view::npos) return false;
            i = end + 2;
        } else {
            return false;
        }
    }
    return true;
}

std::string message_of(sqlite3* database, int rc) {
    if (database != nullptr) return sqlite3_errmsg(database);
    return sqlite3_errstr(rc);
}

// SQLite binds a null pointer as SQL NULL; an empty string must stay ''.
const char* non_null(std::string_view text) { return text.data() != nullptr ? text.data() : ""; }

}  // namespace

// ---- Statement ----

Statement::~Statement() {
    if (statement_ != nullptr) sqlite3_finalize(statement_);
}

Statement::Statement(Statement&& other) noexcept
    : statement_(std::exchange(other.statement_, nullptr)),
      database_(std::exchange(other.database_, nullptr)),
      bind_error_(std::move(other.bind_error_)) {}

Statement& Statement::operator=(Statement&& other) noexcept {
    if (this != &other) {
        if (statement_ != nullptr) sqlite3_finalize(statement_);
        statement_ = std::exchange(other.statement_, nullptr);
        database_ = std::exchange(other.database_, nullptr);
        bind_error_ = std::move(other.bind_error_);
    }
    return *this;
}

void Statement::note_bind(int rc, int index) {
    if (rc == SQLITE_OK || !bind_error_.empty()) return;
    bind_error_ = fmt::format("cannot bind parameter {}: {}", index, message_of(database_, rc));
}

Statement& Statement::bind(int index, int64_t value) {
    if (statement_ == nullptr) panic("sqlite::Statement::bind on an empty statement");
    note_bind(sqlite3_bind_int64(statement_, index, static_cast<sqlite3_int64>(value)), index);
    return *this;
}

Statement& Statement::bind(int index, std::string_view text) {
    if (statement_ == nullptr) panic("sqlite::Statement::bind on an empty statement");
    note_bind(sqlite3_bind_text64(statement_, index, non_null(text), text.size(), SQLITE_TRANSIENT, SQLITE_UTF8),
              index);
    return *this;
}

Statement& Statement::bind(int index, std::nullptr_t) {
    if (statement_ == nullptr) panic("sqlite::Statement::bind on an empty statement");
    note_bind(sqlite3_bind_null(statement_, index), index);
    return *this;
}

Statement& Statement::bind_blob(int index, std::string_view bytes) {
    if (statement_ == nullptr) panic("sqlite::Statement::bind_blob on an empty statement");
    note_bind(sqlite3_bind_blob64(statement_, index, non_null(bytes), bytes.size(), SQLITE_TRANSIENT), index);
    return *this;
}

Result<bool> Statement::step() {
    if (statement_ == nullptr) panic("sqlite::Statement::step on an empty statement");
    if (!bind_error_.empty()) {
        std::string error = std::exchange(bind_error_, std::string());
        return make_error(std::move(error));
    }
    int rc = sqlite3_step(statement_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    std::string error = message_of(database_, rc);
    // Leave the statement reusable: after an error it must be reset anyway.
    sqlite3_reset(statement_);
    return make_error(std::move(error));
}

Status Statement::run() {
    for (;;) {
        auto row = step();
        if (!row) return make_error(row.error());
        if (!*row) break;
    }
    sqlite3_reset(statement_);
    return {};
}

void Statement::check_column(int column) const {
    if (statement_ == nullptr) panic("sqlite::Statement column read on an empty statement");
    if (column < 0 || column >= sqlite3_column_count(statement_))
        panic(fmt::format("sqlite::Statement column {} out of range", column));
}

int64_t Statement::column_int64(int column) const {
    check_column(column);
    return sqlite3_column_int64(statement_, column);
}

std::string Statement::column_text(int column) const {
    check_column(column);
    // Text first, then bytes: the documented order that avoids a conversion
    // invalidating the pointer.
    const unsigned char* text = sqlite3_column_text(statement_, column);
    int size = sqlite3_column_bytes(statement_, column);
    if (text == nullptr || size <= 0) return {};
    return std::string(reinterpret_cast<const char*>(text), static_cast<size_t>(size));
}

bool Statement::column_is_null(int column) const {
    check_column(column);
    return sqlite3_column_type(statement_, column) == SQLITE_NULL;
}

int Statement::column_count() const {
    if (statement_ == nullptr) return 0;
    return sqlite3_column_count(statement_);
}

void Statement::reset() {
    if (statement_ != nullptr) sqlite3_reset(statement_);
}

void Statement::clear_bindings() {
    if (statement_ != nullptr) sqlite3_clear_bindings(statement_);
    bind_error_.clear();
}

// ---- Database ----

Result<Database> Database::open(const std::string& path, Mode mode) {
    int flags = SQLITE_OPEN_NOMUTEX;  // one connection per thread (DESIGN §6 worker pool)
    switch (mode) {
        case Mode::read_only: flags |= SQLITE_OPEN_READONLY; break;
        case Mode::read_write: flags |= SQLITE_OPEN_READWRITE; break;
        case Mode::read_write_create: flags |= SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE; break;
    }
    sqlite3* raw = nullptr;
    int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
    // Even a failed open may hand back a handle that must be closed.
    Database database(raw, path);
    if (rc != SQLITE_OK) {
        return make_error(fmt::format("cannot open database {}: {}", path, message_of(raw, rc)));
    }
    sqlite3_extended_result_codes(raw, 1);
    if (Status s = database.set_busy_timeout(default_busy_timeout); !s)
        return make_error(fmt::format("database {}: {}", path, s.error()));

    // Reading the schema is the first real I/O: it fails here, not at the
    // first query, if the file is not an SQLite database.
    if (Status s = database.exec("SELECT count(*) FROM sqlite_master"); !s)
        return make_error(fmt::format("cannot open database {}: {}", path, s.error()));
    if (Status s = database.exec("PRAGMA foreign_keys = ON"); !s)
        return make_error(fmt::format("database {}: {}", path, s.error()));

    if (mode != Mode::read_only) {
        auto journal = database.prepare("PRAGMA journal_mode = WAL");
        if (!journal) return make_error(fmt::format("database {}: {}", path, journal.error()));
        auto row = journal->step();
        if (!row) return make_error(fmt::format("database {}: cannot switch to WAL: {}", path, row.error()));
        std::string journal_mode = *row ? journal->column_text(0) : std::string();
        journal->reset();
        if (journal_mode != "wal")
            return make_error(fmt::format("database {}: cannot switch to WAL (journal_mode is {})", path,
                                          journal_mode.empty() ? "unknown" : journal_mode));
        // In WAL mode NORMAL is durable against application crashes and keeps
        // the database consistent after power loss (sqlite.org/wal.html).
        if (Status s = database.exec("PRAGMA synchronous = NORMAL"); !s)
            return make_error(fmt::format("database {}: {}", path, s.error()));
    }
    return database;
}

Database::~Database() { close(); }

Database::Database(Database&& other) noexcept
    : database_(std::exchange(other.database_, nullptr)), path_(std::move(other.path_)) {}

Database& Database::operator=(Database&& other) noexcept {
    if (this != &other) {
        close();
        database_ = std::exchange(other.database_, nullptr);
        path_ = std::move(other.path_);
    }
    return *this;
}

void Database::close() {
    // close_v2: statements still alive keep the connection until finalized,
    // instead of SQLITE_BUSY and a leak.
    if (database_ != nullptr) sqlite3_close_v2(database_);
    database_ = nullptr;
}

Status Database::set_busy_timeout(std::chrono::milliseconds timeout) {
    if (database_ == nullptr) panic("sqlite::Database used after move or close");
    auto ms = timeout.count();
    if (ms < 0) ms = 0;
    if (ms > INT_MAX) ms = INT_MAX;
    int rc = sqlite3_busy_timeout(database_, static_cast<int>(ms));
    if (rc != SQLITE_OK) return make_error(message_of(database_, rc));
    return {};
}

Status Database::exec(std::string_view sql) {
    if (database_ == nullptr) panic("sqlite::Database used after move or close");
    // sqlite3_exec needs a NUL-terminated string.
    std::string text(sql);
    char* error = nullptr;
    int rc = sqlite3_exec(database_, text.c_str(), nullptr, nullptr, &error);
    if (rc != SQLITE_OK) {
        std::string message = error != nullptr ? std::string(error) : message_of(database_, rc);
        sqlite3_free(error);
        return make_error(std::move(message));
    }
    return {};
}

Result<Statement> Database::prepare(std::string_view sql) {
    if (database_ == nullptr) panic("sqlite::Database used after move or close");
    if (sql.size() > static_cast<size_t>(INT_MAX)) return make_error("SQL statement too long");
    sqlite3_stmt* raw = nullptr;
    const char* tail = nullptr;
    int rc = sqlite3_prepare_v2(database_, non_null(sql), static_cast<int>(sql.size()), &raw, &tail);
    Statement statement(raw, database_);
    if (rc != SQLITE_OK) return make_error(message_of(database_, rc));
    if (raw == nullptr) return make_error("empty SQL statement");
    size_t used = static_cast<size_t>(tail - non_null(sql));
    if (!only_trivia(sql.substr(used)))
        return make_error("prepare() takes one SQL statement; use exec() for several");
    return statement;
}

int64_t Database::last_insert_rowid() const {
    if (database_ == nullptr) panic("sqlite::Database used after move or close");
    return sqlite3_last_insert_rowid(database_);
}

int Database::changes() const {
    if (database_ == nullptr) panic("sqlite::Database used after move or close");
    return sqlite3_changes(database_);
}

std::string Database::error_message() const {
    if (database_ == nullptr) return "database is not open";
    return sqlite3_errmsg(database_);
}

// ---- Transaction ----

Transaction::Transaction(Database& database, Kind kind) : database_(database) {
    begin_ = database_.exec(kind == Kind::immediate ? "BEGIN IMMEDIATE" : "BEGIN DEFERRED");
    active_ = begin_.ok();
}

Transaction::~Transaction() {
    if (!active_ || !database_.is_open()) return;
    // Some errors (SQLITE_FULL, SQLITE_IOERR...) already rolled back; a second
    // ROLLBACK would fail, so ask SQLite whether a transaction is still open.
    if (sqlite3_get_autocommit(database_.handle()) == 0) (void)database_.exec("ROLLBACK");
}

Status Transaction::commit() {
    if (!active_) return make_error(begin_.ok() ? "transaction already finished" : begin_.error());
    Status status = database_.exec("COMMIT");
    // On failure (e.g. SQLITE_BUSY) the transaction stays open and the
    // destructor rolls it back.
    if (status) active_ = false;
    return status;
}

Status Transaction::rollback() {
    if (!active_) return make_error(begin_.ok() ? "transaction already finished" : begin_.error());
    active_ = false;
    if (sqlite3_get_autocommit(database_.handle()) != 0) return {};
    return database_.exec("ROLLBACK");
}

}  // namespace facteur::sqlite
