"""The EMA-teacher building block: students the optimiser trains, each with a teacher that follows it by an
exponential moving average (the engine applies the update after every optimiser step, :meth:`ema_pairs`).

Mean Teacher, CW-BASS, FARCLUSS and STPG pair student and teacher networks, CoSA its online and assignment
networks; what they share is declared once here: which attributes form the pairs, the networks the engine
trains, updates and evaluates, the momentum warm-up, and teachers kept in eval mode (running BN statistics, no
dropout) whatever mode the engine sets. Attribute names are the state dict's keys, so they stay the methods' own.
"""
from __future__ import annotations

import copy

from torch import nn

from reprokit.methods.base import Method


def ema_copy(student: nn.Module) -> nn.Module:
    """A teacher that starts as ``student``'s copy and takes no gradient."""
    teacher = copy.deepcopy(student)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


class EMATeachers(Method):
    """A method made of (student, teacher) pairs of attributes. The first pair's student is evaluated, or its
    teacher when ``params.eval_net`` names ``teacher_name``; it also makes (teacher) and learns (student) the
    pseudo-labels the inspector shows. ``params.ema_momentum`` is every pair's momentum, warmed up with
    ``params.ema_warmup``; ``params.teacher_train_mode`` (where a method has it) leaves teachers in train mode."""

    #: (student attribute, teacher attribute) of each pair, the evaluated pair first
    pairs: tuple[tuple[str, str], ...] = (("student", "teacher"),)
    #: the value of ``params.eval_net`` that evaluates the first pair's teacher
    teacher_name = "teacher"

    def active_pairs(self) -> tuple[tuple[str, str], ...]:
        """The pairs this configuration builds (a method may leave some out)."""
        return self.pairs

    def students(self) -> dict[str, nn.Module]:
        return {student: getattr(self, student) for student, _ in self.active_pairs()}

    def teachers(self) -> list[nn.Module]:
        return [getattr(self, teacher) for _, teacher in self.active_pairs()]

    def ema_pairs(self):
        return [(getattr(self, teacher), getattr(self, student), self.params.ema_momentum)
                for student, teacher in self.active_pairs()]

    def ema_momentum(self, momentum: float, step: int) -> float:
        """``min(momentum, 1 - 1 / (step + 1))`` with ``ema_warmup`` (Tarvainen & Valpola's Mean Teacher), so a
        teacher is not dominated by its random start; else constant."""
        return min(momentum, 1.0 - 1.0 / (step + 1)) if self.params.ema_warmup else momentum

    def eval_network(self) -> nn.Module:
        student, teacher = self.pairs[0]
        return getattr(self, teacher if self.params.eval_net == self.teacher_name else student)

    def label_roles(self) -> tuple[nn.Module, nn.Module]:
        student, teacher = self.pairs[0]
        return getattr(self, teacher), getattr(self, student)

    def train(self, mode: bool = True):
        super().train(mode)
        if not getattr(self.params, "teacher_train_mode", False):
            for teacher in self.teachers():
                teacher.eval()
        return self
