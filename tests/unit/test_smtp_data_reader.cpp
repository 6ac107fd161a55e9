// Unit tests for smtpd/data_reader: RFC 5321 §4.5.2 dot-unstuffing, the
// end of data only at CRLF.CRLF, every bare LF/CR smuggling variant, line
// and size limits, Received: counting across arbitrary chunk boundaries.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "smtpd/data_reader.hpp"

using namespace facteur::smtpd;

namespace {

// Splits a byte stream into lines the way event::Connection::read_line does
// (each line ends at "\n", included).
std::vector<std::string> lines_of(const std::string& stream) {
    std::vector<std::string> lines;
    size_t start = 0;
    while (start < stream.size()) {
        size_t newline = stream.find('\n', start);
        if (newline == std::string::npos) {
            lines.push_back(stream.substr(start));
            break;
        }
        lines.push_back(stream.substr(start, newline - start + 1));
        start = newline + 1;
    }
    return lines;
}

struct Outcome {
    bool ended = false;
    std::string stored;
    std::string rest;  // lines after the end (what would be read as commands)
    BodyError error = BodyError::none;
    uint64_t size = 0;
    size_t received = 0;
};

Outcome run_data(const std::string& stream, BodyLimits limits = {}) {
    DataReader reader(limits);
    Outcome outcome;
    for (const std::string& line : lines_of(stream)) {
        if (outcome.ended) {
            outcome.rest += line;
            continue;
        }
        std::string_view content;
        if (reader.feed_line(line, content) == DataReader::Step::end) {
            outcome.ended = true;
            continue;
        }
        outcome.stored += content;
    }
    outcome.error = reader.error();
    outcome.size = reader.size();
    outcome.received = reader.scanner().received_count();
    return outcome;
}

BodyLimits limits_with(uint64_t size, size_t line, size_t hops) {
    BodyLimits limits;
    limits.max_size = size;
    limits.max_line_length = line;
    limits.max_received = hops;
    return limits;
}

}  // namespace

TEST_CASE("DATA: dot-unstuffing and the end of data (RFC 5321 §4.5.2)") {
    auto [stream, stored, rest] = GENERATE(table<std::string, std::string, std::string>({
        {".\r\n", "", ""},
        {"Subject: x\r\n\r\nbody\r\n.\r\n", "Subject: x\r\n\r\nbody\r\n", ""},
        {"..leading dot\r\n.\r\n", ".leading dot\r\n", ""},
        {"...\r\n..\r\n.\r\n", "..\r\n.\r\n", ""},
        {".x\r\n.\r\n", "x\r\n", ""},
        {"a\r\n.\r\nQUIT\r\n", "a\r\n", "QUIT\r\n"},
        {"a\r\n. \r\n.\r\n", "a\r\n \r\n", ""},
    }));
    INFO(stream);
    Outcome outcome = run_data(stream);
    CHECK(outcome.ended);
    CHECK(outcome.error == BodyError::none);
    CHECK(outcome.stored == stored);
    CHECK(outcome.rest == rest);
    CHECK(outcome.size == stored.size());
}

TEST_CASE("DATA: bare LF and bare CR never end the message and get it refused") {
    // Each stream tries an end-of-data that is not CRLF.CRLF, then smuggles
    // a second transaction, and finally ends properly.
    auto variant = GENERATE(as<std::string>{},
                            "a\n.\nMAIL FROM:<x@evil.test>\r\n",        // \n.\n
                            "a\r\n.\nMAIL FROM:<x@evil.test>\r\n",      // \r\n.\n
                            "a\n.\r\nMAIL FROM:<x@evil.test>\r\n",      // \n.\r\n
                            "a\r.\r\nMAIL FROM:<x@evil.test>\r\n",      // \r.\r\n
                            "a\r\n.\rMAIL FROM:<x@evil.test>\r\n",      // \r\n.\r
                            "a\r.\rMAIL FROM:<x@evil.test>\r\n",        // \r.\r
                            "bare\rcr in a line\r\n",
                            "bare lf\n",
                            "cr before crlf\r\r\n",
                            "Subject: x\nX: y\r\n\r\nbody\r\n");
    std::string stream = variant + "more\r\n.\r\n";
    INFO(stream);
    Outcome outcome = run_data(stream);
    CHECK(outcome.ended);
    CHECK(outcome.rest.empty());  // nothing after the real end: no smuggled command
    CHECK(outcome.error == BodyError::bare_line_ending);
}

TEST_CASE("DATA: a line after a bare-LF line starting with '.' CRLF is still data") {
    Outcome outcome = run_data("x\n.\r\nRSET\r\n");
    CHECK_FALSE(outcome.ended);
    CHECK(outcome.error == BodyError::bare_line_ending);
}

TEST_CASE("DATA: line length limit counts the CRLF") {
    BodyLimits limits = limits_with(UINT64_MAX, 10, 100);
    CHECK(run_data(std::string(8, 'x') + "\r\n.\r\n", limits).error == BodyError::none);
    CHECK(run_data(std::string(9, 'x') + "\r\n.\r\n", limits).error == BodyError::line_too_long);
    // A dot-stuffed line is measured after unstuffing.
    CHECK(run_data("." + std::string(8, 'x') + "\r\n.\r\n", limits).error == BodyError::none);
}

TEST_CASE("DATA: a line dropped by the connection refuses the message, and the end after it is flagged") {
    DataReader reader(BodyLimits{});
    std::string_view content;
    CHECK(reader.feed_line("a\r\n", content) == DataReader::Step::content);
    reader.feed_too_long_line();
    CHECK(reader.error() == BodyError::line_too_long);
    CHECK(reader.feed_line(".\r\n", content) == DataReader::Step::end);
    CHECK(reader.ended_after_discarded_line());

    DataReader later(BodyLimits{});
    later.feed_too_long_line();
    CHECK(later.feed_line("b\r\n", content) == DataReader::Step::content);
    CHECK(later.feed_line(".\r\n", content) == DataReader::Step::end);
    CHECK_FALSE(later.ended_after_discarded_line());
}

TEST_CASE("DATA: size limit keeps reading to the end") {
    BodyLimits limits = limits_with(10, 0, 100);
    Outcome fits = run_data("123456789\r\n.\r\n", limits);  // 11 bytes
    CHECK(fits.error == BodyError::too_large);
    CHECK(fits.ended);
    Outcome exact = run_data("12345678\r\n.\r\n", limits);  // 10 bytes
    CHECK(exact.error == BodyError::none);
    CHECK(exact.size == 10);
}

TEST_CASE("DATA: Received headers are counted in the header only") {
    std::string header;
    for (int i = 0; i < 3; ++i) header += "Received: from x by y; date\r\n\tcontinued\r\n";
    header += "received : obsolete spacing\r\n";
    header += "X-Received: not counted\r\n";
    std::string stream = header + "Subject: s\r\n\r\nReceived: in the body, not counted\r\n.\r\n";
    Outcome ok = run_data(stream, limits_with(UINT64_MAX, 0, 4));
    CHECK(ok.received == 4);
    CHECK(ok.error == BodyError::none);
    Outcome loop = run_data(stream, limits_with(UINT64_MAX, 0, 3));
    CHECK(loop.error == BodyError::too_many_hops);
}

TEST_CASE("body scanner: the same verdicts whatever the chunk boundaries (BDAT)") {
    std::string message =
        "Received: a\r\nReceived: b\r\nMessage-ID: <x@y>\r\nDate: today\r\nSubject: s\r\n\r\nline\r\nReceived: c\r\n";
    for (size_t piece = 1; piece <= message.size(); ++piece) {
        BodyScanner scanner(limits_with(UINT64_MAX, 100, 2));
        for (size_t i = 0; i < message.size(); i += piece) scanner.consume(std::string_view(message).substr(i, piece));
        scanner.finish();
        INFO(piece);
        CHECK(scanner.error() == BodyError::none);
        CHECK(scanner.received_count() == 2);
        CHECK(scanner.has_message_id());
        CHECK(scanner.has_date());
        CHECK_FALSE(scanner.in_header());
        CHECK(scanner.size() == message.size());
    }
}

TEST_CASE("body scanner: CR split from its LF across chunks is fine; a trailing CR is bare") {
    BodyScanner split(BodyLimits{});
    split.consume("abc\r");
    split.consume("\ndef\r\n");
    split.finish();
    CHECK(split.error() == BodyError::none);

    BodyScanner trailing(BodyLimits{});
    trailing.consume("abc\r\nx\r");
    trailing.finish();
    CHECK(trailing.error() == BodyError::bare_line_ending);
}

TEST_CASE("body scanner: BINARYMIME turns off line checks") {
    BodyLimits limits;
    limits.check_line_endings = false;
    limits.max_line_length = 0;
    BodyScanner scanner(limits);
    scanner.consume(std::string("bin\0ary\nlf\rcr", 13));
    scanner.consume(std::string(100000, 'x'));
    scanner.finish();
    CHECK(scanner.error() == BodyError::none);
}

TEST_CASE("body scanner: without Message-ID and Date; header ends at a non-field line") {
    BodyScanner scanner(BodyLimits{});
    scanner.consume("Subject: hi\r\nthis is not a field\r\nDate: not a header any more\r\n");
    CHECK_FALSE(scanner.has_message_id());
    CHECK_FALSE(scanner.has_date());
    CHECK_FALSE(scanner.in_header());
}

TEST_CASE("body scanner: the first error is kept") {
    BodyScanner scanner(limits_with(5, 0, 10));
    scanner.consume("a\n");
    scanner.consume("bcdefgh\r\n");
    CHECK(scanner.error() == BodyError::bare_line_ending);
}
