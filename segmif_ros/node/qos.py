"""QoS of segmif_node's topics the way ROS users set them, and warnings on incompatible peers.

The image subscriptions and the output publishers are created with rclpy's
``QoSOverridingOptions.with_default_policies()``: each declares read-only parameters
``qos_overrides.<fully qualified topic>.<subscription|publisher>.<policy>`` for history, depth,
reliability and durability, whose values (from a parameter file or ``-p``) replace the profile
of ``input_qos`` / ``output_qos``, e.g.::

    /**:
      ros__parameters:
        qos_overrides:
          /visible/image:
            subscription:
              reliability: reliable
              depth: 10
          /fused/image:
            publisher:
              reliability: best_effort

The effective profiles are logged at start-up (configure: outputs; activate: inputs). A peer
whose QoS cannot match (a best-effort publisher for a reliable subscription, a volatile one
for transient local, ...) fires rclpy's incompatible-QoS event: a warning naming the topic and
the policy, throttled per topic (one line per 5 s).
"""
from __future__ import annotations

from typing import Callable

from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.qos import QoSPolicyKind, QoSProfile
from rclpy.qos_overriding_options import QoSOverridingOptions

from .parameters import describe_qos


def copy_qos(qos: QoSProfile) -> QoSProfile:
    """A new profile with the policies of ``qos`` (an override changes only the copy)."""
    return QoSProfile(history=qos.history, depth=qos.depth, reliability=qos.reliability,
                      durability=qos.durability, lifespan=qos.lifespan, deadline=qos.deadline,
                      liveliness=qos.liveliness,
                      liveliness_lease_duration=qos.liveliness_lease_duration,
                      avoid_ros_namespace_conventions=qos.avoid_ros_namespace_conventions)


def policy_name(kind) -> str:
    """'reliability', 'durability', ... of an rmw policy kind (int or QoSPolicyKind)."""
    try:
        return QoSPolicyKind(int(kind)).name.lower()
    except ValueError:
        return f"policy {kind}"


def _on_incompatible(node, topic: str, side: str, warn: Callable[[str, str], None]):
    def callback(event) -> None:
        name = policy_name(event.last_policy_kind)
        if side == "subscription":
            text = (f"{topic}: a publisher offers QoS incompatible with this subscription "
                    f"({name}; the subscription requests {describe_qos(sub_qos[0])}): its "
                    f"messages are not received ({event.total_count} incompatible so far); set "
                    f"input_qos or qos_overrides.{topic}.subscription.{name}")
        else:
            text = (f"{topic}: a subscription requests QoS incompatible with this publisher "
                    f"({name}; offered {describe_qos(sub_qos[0])}): it gets nothing "
                    f"({event.total_count} incompatible so far); set output_qos or "
                    f"qos_overrides.{topic}.publisher.{name}")
        warn(f"incompatible_qos:{side}:{topic}", text)
    sub_qos = [None]
    return callback, sub_qos


def subscription_options(node, topic: str, qos: QoSProfile,
                         warn: Callable[[str, str], None]) -> dict:
    """Keyword arguments of ``node.create_subscription(type, topic, callback, **kwargs)``: a
    copy of ``qos`` (overrides are per topic), the QoS overrides and the incompatible-QoS
    warning (``warn(key, text)``, throttled by the caller)."""
    name = node.resolve_topic_name(topic)
    on_event, holder = _on_incompatible(node, name, "subscription", warn)
    qos = copy_qos(qos)
    holder[0] = qos  # rclpy applies the overrides to this profile
    return {"qos_profile": qos,
            "event_callbacks": SubscriptionEventCallbacks(incompatible_qos=on_event),
            "qos_overriding_options": QoSOverridingOptions.with_default_policies()}


def publisher_options(node, topic: str, qos: QoSProfile,
                      warn: Callable[[str, str], None]) -> dict:
    """Keyword arguments of ``node.create_publisher(type, topic, **kwargs)``, as
    :func:`subscription_options`."""
    name = node.resolve_topic_name(topic)
    on_event, holder = _on_incompatible(node, name, "publisher", warn)
    qos = copy_qos(qos)
    holder[0] = qos
    return {"qos_profile": qos,
            "event_callbacks": PublisherEventCallbacks(incompatible_qos=on_event),
            "qos_overriding_options": QoSOverridingOptions.with_default_policies()}
