#!/usr/bin/env bash
# kafka-topics.sh as Kafka's distribution has it (the compose file's healthcheck runs it).
exec java -Dlog4j2.configurationFile=/opt/kafka/config/tools-log4j2.xml -cp '/opt/kafka/libs/*' \
    org.apache.kafka.tools.TopicCommand "$@"
