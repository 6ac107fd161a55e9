// qmgr's delivery status notifications (RFC 3464) and retry backoff.
#include <catch2/catch.hpp>

#include <map>
#include <regex>
#include <set>
#include <tuple>
#include <vector>

#include "libmail/message_header.hpp"
#include "qmgr/bounce.hpp"

using namespace facteur;
using namespace facteur::qmgr;

TEST_CASE("NOTIFY decides which outcomes are reported (RFC 3461 section 4.1)") {
    CHECK(wants_failure_report(queue::notify_default));
    CHECK(wants_failure_report(queue::notify_failure | queue::notify_delay));
    CHECK_FALSE(wants_failure_report(queue::notify_never));
    CHECK_FALSE(wants_failure_report(queue::notify_success));
    CHECK(wants_success_report(queue::notify_success));
    CHECK_FALSE(wants_success_report(queue::notify_default));
}

TEST_CASE("RET decides how much of the original comes back") {
    CHECK(returned_part(queue::Ret::headers, 10, 1000) == Returned::headers);
    CHECK(returned_part(queue::Ret::full, 10, 1000) == Returned::full);
    CHECK(returned_part(queue::Ret::unspecified, 10, 1000) == Returned::full);
    CHECK(returned_part(queue::Ret::full, 5000, 1000) == Returned::headers);
}

TEST_CASE("backoff grows with the message's age between the bounds") {
    CHECK(backoff_seconds(0, 300, 4000) == 300);
    CHECK(backoff_seconds(1000, 300, 4000) == 1000);
    CHECK(backoff_seconds(100000, 300, 4000) == 4000);
}

TEST_CASE("a failure report is a multipart/report with a delivery-status part") {
    setenv("TZ", "UTC", 1);
    tzset();
    ReportInput input;
    input.hostname = "mail.example.test";
    input.queue_id = "0123456789ABCDEF00";
    input.report_id = "0123456789ABCDEF01";
    input.envelope.sender = "alice@example.test";
    input.envelope.envid = "env-42";
    input.envelope.arrival_time = 1795428000;
    input.recipients = {{"bob@example.test", "rfc822;bob@example.test", Action::failed, "5.2.2", "mailbox full", ""}};
    input.original = "Subject: hi\r\n\r\nbody\r\n";
    input.original_is_complete = true;
    input.now = 1795428060;
    std::string report = compose_report(input);
    std::string expected =
        "From: MAILER-DAEMON@mail.example.test (Mail Delivery System)\r\n"
        "To: <alice@example.test>\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Date: Mon, 23 Nov 2026 10:01:00 +0000\r\n"
        "Message-ID: <0123456789ABCDEF01@mail.example.test>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=delivery-status;\r\n"
        "\tboundary=\"0123456789ABCDEF01/mail.example.test\"\r\n"
        "\r\n"
        "This is a MIME-encapsulated message.\r\n"
        "\r\n"
        "--0123456789ABCDEF01/mail.example.test\r\n"
        "Content-Description: Notification\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        "This is the mail system at host mail.example.test.\r\n"
        "\r\n"
        "I'm sorry to have to inform you that your message could not\r\n"
        "be delivered to one or more recipients. It's attached below.\r\n"
        "\r\n"
        "<bob@example.test>: mailbox full\r\n"
        "\r\n"
        "--0123456789ABCDEF01/mail.example.test\r\n"
        "Content-Description: Delivery report\r\n"
        "Content-Type: message/delivery-status\r\n"
        "\r\n"
        "Reporting-MTA: dns; mail.example.test\r\n"
        "X-Facteur-Queue-ID: 0123456789ABCDEF00\r\n"
        "Original-Envelope-Id: env-42\r\n"
        "X-Facteur-Sender: rfc822; alice@example.test\r\n"
        "Arrival-Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
        "\r\n"
        "Final-Recipient: rfc822; bob@example.test\r\n"
        "Original-Recipient: rfc822; bob@example.test\r\n"
        "Action: failed\r\n"
        "Status: 5.2.2\r\n"
        "Diagnostic-Code: x-unix; mailbox full\r\n"
        "\r\n"
        "--0123456789ABCDEF01/mail.example.test\r\n"
        "Content-Description: Undelivered Message\r\n"
        "Content-Type: message/rfc822\r\n"
        "\r\n"
        "Subject: hi\r\n"
        "\r\n"
        "body\r\n"
        "\r\n"
        "--0123456789ABCDEF01/mail.example.test--\r\n";
    CHECK(report == expected);

    input.original = "Subject: hi\r\n\r\n";
    input.original_is_complete = false;
    input.recipients[0].diagnostic = "evil\r\nBcc: x";
    std::string headers_only = compose_report(input);
    CHECK(headers_only.find("Content-Type: text/rfc822-headers\r\n") != std::string::npos);
    CHECK(headers_only.find("\r\nBcc: x") == std::string::npos);
}

namespace {

// A strict reading of an RFC 3464 report: CRLF lines only, a
// multipart/report with report-type=delivery-status and three parts, and a
// delivery-status part made of a per-message block and per-recipient
// blocks whose fields are the ones §2.2 and §2.3 define (or X- extensions),
// each once, with the required ones present and well-formed values.
struct ParsedReport {
    std::map<std::string, std::string> headers;
    std::string notification;
    std::map<std::string, std::string> per_message;
    std::vector<std::map<std::string, std::string>> recipients;
    std::string returned_part_headers;
};

std::vector<std::string> split_lines(const std::string& text) {
    std::vector<std::string> lines;
    size_t start = 0;
    while (start < text.size()) {
        size_t end = text.find("\r\n", start);
        REQUIRE(end != std::string::npos);
        std::string line = text.substr(start, end - start);
        REQUIRE(line.find('\n') == std::string::npos);
        REQUIRE(line.find('\r') == std::string::npos);
        lines.push_back(line);
        start = end + 2;
    }
    return lines;
}

std::map<std::string, std::string> parse_block(const std::vector<std::string>& lines,
                                               const std::set<std::string>& allowed) {
    std::map<std::string, std::string> fields;
    for (const std::string& line : lines) {
        size_t colon = line.find(": ");
        REQUIRE(colon != std::string::npos);
        std::string name = line.substr(0, colon);
        INFO(name);
        CHECK((allowed.count(name) == 1 || name.rfind("X-", 0) == 0));
        CHECK(fields.count(name) == 0);
        fields[name] = line.substr(colon + 2);
    }
    return fields;
}

bool is_status_code(const std::string& status) {
    // RFC 3463 §2: class "." subject "." detail.
    static const std::regex pattern("[245]\\.[0-9]{1,3}\\.[0-9]{1,3}");
    return std::regex_match(status, pattern);
}

ParsedReport parse_report(const std::string& text) {
    ParsedReport report;
    std::vector<std::string> lines = split_lines(text);
    size_t i = 0;
    std::string last;
    for (; i < lines.size() && !lines[i].empty(); ++i) {
        if (lines[i][0] == '\t' || lines[i][0] == ' ') {
            report.headers[last] += lines[i];
            continue;
        }
        size_t colon = lines[i].find(": ");
        REQUIRE(colon != std::string::npos);
        last = lines[i].substr(0, colon);
        report.headers[last] = lines[i].substr(colon + 2);
    }
    const std::string& type = report.headers["Content-Type"];
    REQUIRE(type.rfind("multipart/report; report-type=delivery-status;", 0) == 0);
    size_t quote = type.find("boundary=\"");
    REQUIRE(quote != std::string::npos);
    std::string boundary = type.substr(quote + 10, type.find('"', quote + 10) - quote - 10);
    std::vector<std::vector<std::string>> parts;
    bool closed = false;
    for (; i < lines.size(); ++i) {
        if (lines[i] == "--" + boundary) {
            parts.emplace_back();
        } else if (lines[i] == "--" + boundary + "--") {
            closed = true;
            break;
        } else if (!parts.empty()) {
            parts.back().push_back(lines[i]);
        }
    }
    REQUIRE(closed);
    REQUIRE(parts.size() == 3);
    // Part 1: text/plain. Part 2: message/delivery-status.
    auto body_of = [](const std::vector<std::string>& part, std::string& headers) {
        size_t k = 0;
        for (; k < part.size() && !part[k].empty(); ++k) headers += part[k] + "\n";
        return std::vector<std::string>(part.begin() + static_cast<long>(std::min(k + 1, part.size())), part.end());
    };
    std::string first_headers, status_headers;
    for (const std::string& line : body_of(parts[0], first_headers)) report.notification += line + "\n";
    CHECK(first_headers.find("Content-Type: text/plain") != std::string::npos);
    std::vector<std::string> status = body_of(parts[1], status_headers);
    CHECK(status_headers.find("Content-Type: message/delivery-status\n") != std::string::npos);
    std::vector<std::vector<std::string>> blocks(1);
    for (const std::string& line : status) {
        if (line.empty()) {
            if (!blocks.back().empty()) blocks.emplace_back();
        } else {
            blocks.back().push_back(line);
        }
    }
    if (blocks.back().empty()) blocks.pop_back();
    REQUIRE(blocks.size() >= 2);
    // RFC 3464 §2.2 per-message fields.
    report.per_message = parse_block(blocks[0], {"Original-Envelope-Id", "Reporting-MTA", "DSN-Gateway",
                                                 "Received-From-MTA", "Arrival-Date"});
    CHECK(report.per_message.count("Reporting-MTA") == 1);
    CHECK(report.per_message["Reporting-MTA"].rfind("dns; ", 0) == 0);
    for (size_t b = 1; b < blocks.size(); ++b) {
        // RFC 3464 §2.3 per-recipient fields.
        auto fields = parse_block(blocks[b], {"Original-Recipient", "Final-Recipient", "Action", "Status", "Remote-MTA",
                                              "Diagnostic-Code", "Last-Attempt-Date", "Final-Log-ID",
                                              "Will-Retry-Until"});
        REQUIRE(fields.count("Final-Recipient") == 1);
        CHECK(fields["Final-Recipient"].rfind("rfc822; ", 0) == 0);
        REQUIRE(fields.count("Action") == 1);
        REQUIRE(fields.count("Status") == 1);
        const std::string& action = fields["Action"];
        CHECK(std::set<std::string>{"failed", "delayed", "delivered", "relayed", "expanded"}.count(action) == 1);
        CHECK(is_status_code(fields["Status"]));
        // §2.3.4: the status class agrees with the action (4.4.7 may fail).
        char klass = fields["Status"][0];
        if (action == "failed") CHECK((klass == '5' || klass == '4'));
        else if (action == "delayed") CHECK(klass == '4');
        else CHECK(klass == '2');
        // §2.3.7: Will-Retry-Until only for delayed recipients.
        if (fields.count("Will-Retry-Until")) CHECK(action == "delayed");
        if (fields.count("Remote-MTA")) CHECK(fields["Remote-MTA"].rfind("dns; ", 0) == 0);
        if (fields.count("Diagnostic-Code")) {
            const std::string& code = fields["Diagnostic-Code"];
            CHECK((code.rfind("smtp; ", 0) == 0 || code.rfind("x-unix; ", 0) == 0));
        }
        report.recipients.push_back(std::move(fields));
    }
    body_of(parts[2], report.returned_part_headers);
    return report;
}

ReportInput base_input() {
    ReportInput input;
    input.hostname = "mail.example.test";
    input.queue_id = "0123456789ABCDEF00";
    input.report_id = "0123456789ABCDEF01";
    input.envelope.sender = "alice@example.test";
    input.envelope.arrival_time = 1795428000;
    input.original = "Subject: hi\r\n\r\n";
    input.original_is_complete = false;
    input.now = 1795428000 + 4 * 3600;
    input.will_retry_until = 1795428000 + 5 * 86400;
    return input;
}

}  // namespace

TEST_CASE("every report action parses as a strict RFC 3464 report") {
    setenv("TZ", "UTC", 1);
    tzset();
    using Row = std::tuple<Action, std::string, std::string, std::string>;  // action, status, relay, diagnostic
    auto [action, status, relay, diagnostic] = GENERATE(
        Row{Action::failed, "5.1.1", "", "user unknown"},
        Row{Action::failed, "5.1.1", "mx.remote.test[192.0.2.1]:25", "550 5.1.1 <bob@remote.test>: no such user"},
        Row{Action::failed, "4.4.7", "", "message expired after 5 day(s) in the queue"},
        Row{Action::delayed, "4.4.1", "none", "connection refused"},
        Row{Action::delayed, "4.2.0", "mx.remote.test[192.0.2.1]:25", "451 4.2.0 try again later"},
        Row{Action::delivered, "2.0.0", "", "delivered to maildir"},
        Row{Action::relayed, "2.0.0", "mx.remote.test[192.0.2.1]:25", "250 2.0.0 Ok: queued as 123"},
        Row{Action::expanded, "2.0.0", "", "alias expanded to 2 target(s)"});
    ReportInput input = base_input();
    input.recipients = {{"bob@remote.test", "rfc822;bob@remote.test", action, status, diagnostic, relay}};
    ParsedReport report = parse_report(compose_report(input));
    REQUIRE(report.recipients.size() == 1);
    auto& fields = report.recipients[0];
    CHECK(fields["Action"] == std::string(action_name(action)));
    CHECK(fields["Status"] == status);
    CHECK(fields["Original-Recipient"] == "rfc822; bob@remote.test");
    bool remote = relay.rfind("mx.", 0) == 0;
    CHECK(fields.count("Remote-MTA") == (remote ? 1u : 0u));
    if (remote) {
        CHECK(fields["Remote-MTA"] == "dns; mx.remote.test");
        CHECK(fields["Diagnostic-Code"] == "smtp; " + diagnostic);
    } else {
        CHECK(fields["Diagnostic-Code"] == "x-unix; " + diagnostic);
    }
    const std::string& subject = report.headers["Subject"];
    if (action == Action::failed) {
        CHECK(subject == "Undelivered Mail Returned to Sender");
    } else if (action == Action::delayed) {
        CHECK(subject == "Delayed Mail (still being retried)");
        CHECK(fields["Will-Retry-Until"] == "Sat, 28 Nov 2026 10:00:00 +0000");
        CHECK(report.notification.find("THIS IS A WARNING ONLY") != std::string::npos);
        CHECK(report.notification.find("could not be delivered for 240 minute(s)") != std::string::npos);
        CHECK(report.returned_part_headers.find("Content-Description: Delayed Message Headers") != std::string::npos);
    } else {
        CHECK(subject == "Successful Mail Delivery Report");
        CHECK(fields.count("Will-Retry-Until") == 0);
    }
    CHECK(report.headers["From"] == "MAILER-DAEMON@mail.example.test (Mail Delivery System)");
    CHECK(report.headers["Auto-Submitted"] == "auto-replied");
}

TEST_CASE("a report's status class always agrees with its action") {
    ReportInput input = base_input();
    input.recipients = {{"a@remote.test", "", Action::delayed, "", "x", ""},
                        {"b@remote.test", "", Action::relayed, "4.0.0", "x", "mx[192.0.2.1]:25"},
                        {"c@remote.test", "", Action::failed, "bogus", "x", ""}};
    ParsedReport report = parse_report(compose_report(input));
    REQUIRE(report.recipients.size() == 3);
    CHECK(report.recipients[0]["Status"] == "4.0.0");
    CHECK(report.recipients[1]["Status"] == "2.0.0");
    CHECK(report.recipients[2]["Status"] == "5.0.0");
    CHECK(report.headers["Subject"] == "Undelivered Mail Returned to Sender");
    // Diagnostic from relayd that is not an SMTP reply stays x-unix.
    CHECK(report.recipients[1]["Diagnostic-Code"] == "x-unix; x");
}

TEST_CASE("report helpers: NOTIFY=DELAY, Remote-MTA, SMTP replies, returned part") {
    CHECK(wants_delay_report(queue::notify_default));
    CHECK(wants_delay_report(queue::notify_delay | queue::notify_failure));
    CHECK_FALSE(wants_delay_report(queue::notify_failure));
    CHECK_FALSE(wants_delay_report(queue::notify_never));
    CHECK(remote_mta("mx.example.org[192.0.2.1]:25") == "mx.example.org");
    CHECK(remote_mta("none").empty());
    CHECK(remote_mta("").empty());
    CHECK(remote_mta("[192.0.2.1]:25").empty());
    CHECK(is_smtp_reply("550 5.1.1 no"));
    CHECK(is_smtp_reply("421-busy"));
    CHECK_FALSE(is_smtp_reply("connection refused"));
    CHECK_FALSE(is_smtp_reply("650 x"));
    CHECK_FALSE(is_smtp_reply("55"));
    // RFC 3461 §4.3: no failure, no full message.
    CHECK(returned_part(queue::Ret::full, 10, 1000, false) == Returned::headers);
    CHECK(returned_part(queue::Ret::full, 10, 1000, true) == Returned::full);
}

TEST_CASE("the remote reply is found in relayd's Postfix-style reason") {
    CHECK(remote_reply("550 5.1.1 no") == "550 5.1.1 no");
    CHECK(remote_reply("host mx.b.test[2001:db8::12] said: 550 5.1.1 <nobody@b.test>: User unknown "
                       "(in reply to RCPT TO command)") == "550 5.1.1 <nobody@b.test>: User unknown");
    CHECK(remote_reply("host mx.b.test[192.0.2.1] said: 451 4.3.0 later") == "451 4.3.0 later");
    CHECK(remote_reply("connect to mx.b.test[192.0.2.1]:25: Connection refused").empty());
    CHECK(remote_reply("host x said: nonsense").empty());
    ReportInput input = base_input();
    input.recipients = {{"nobody@b.test", "", Action::failed, "5.1.1",
                         "host mx.b.test[192.0.2.1] said: 550 5.1.1 user unknown (in reply to RCPT TO command)",
                         "mx.b.test[192.0.2.1]:25"}};
    ParsedReport report = parse_report(compose_report(input));
    CHECK(report.recipients[0]["Diagnostic-Code"] == "smtp; 550 5.1.1 user unknown");
    // People get the whole story.
    CHECK(report.notification.find("said: 550 5.1.1 user unknown (in reply to RCPT TO command)") != std::string::npos);
}
