"""Training: datasets, crop schedules, distillation, teachers, the teacher-output cache, quality metrics."""
