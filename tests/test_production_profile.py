"""The production profile's servers, reached for real: PostgreSQL, Redis for live events and as
Celery broker, and metric points written in bulk."""

import uuid

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from jobs.models import MetricPoint, MetricSeries
from tests import factories

pytestmark = pytest.mark.production


@pytest.mark.django_db
def test_database_is_postgresql():
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('server_version_num')::int")
        assert cursor.fetchone()[0] >= 130000


def test_live_messages_travel_through_redis_pub_sub():
    from jobs.live import delivery

    channel = f"{settings.HUB_NAMESPACE}:live:test:{uuid.uuid4().hex}"
    client = delivery.connect_sync()
    subscription = client.pubsub(ignore_subscribe_messages=True)
    subscription.subscribe(channel)
    subscription.get_message(timeout=1)  # the confirmation
    delivery.publish([(channel, b'{"seq": 1}')])
    assert delivery.flush(5)
    message = subscription.get_message(timeout=5)
    subscription.close()
    assert message is not None and message["data"] == b'{"seq": 1}'


def test_celery_broker_is_redis_and_answers():
    from hubsite.celery import app

    assert settings.CELERY_BROKER_URL == settings.REDIS_URL
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1)
        assert conn.transport.driver_type == "redis"


def test_metric_points_are_written_in_bulk_and_read_by_step_range(alice):
    job = factories.customization_job(alice)
    series = MetricSeries.objects.create(job=job, key="train_loss")
    now = timezone.now()
    MetricPoint.objects.bulk_create(
        (
            MetricPoint(series=series, step=step, value=1 / (step + 1), timestamp=now)
            for step in range(20_000)
        ),
        batch_size=5_000,
    )
    window = MetricPoint.objects.filter(series=series, step__gte=19_990).order_by("step")
    assert [p.step for p in window] == list(range(19_990, 20_000))
    with connection.cursor() as cursor:
        cursor.execute(
            "EXPLAIN SELECT step, value FROM jobs_metricpoint WHERE series_id = %s AND step >= %s",
            [series.pk, 19_990],
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "Index" in plan, plan
