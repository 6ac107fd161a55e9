// qmgr's delivery status notifications (RFC 3464) and retry backoff.
#include <catch2/catch.hpp>

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
    input.recipients = {{"bob@example.test", "rfc822;bob@example.test", false, "5.2.2", "mailbox full"}};
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
